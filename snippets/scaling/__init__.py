"""The scaling pages' examples: one module per page of docs/scaling/."""
