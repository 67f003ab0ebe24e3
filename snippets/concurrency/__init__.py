"""The concurrency pages' examples: one module per page of docs/concurrency/."""
