"""The fleet pages' examples: one module per page of docs/fleet/."""
