"""The patterns pages' examples: one module per page of docs/patterns/."""
