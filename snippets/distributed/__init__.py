"""The distributed-timing pages' examples: one module per page of docs/distributed/."""
