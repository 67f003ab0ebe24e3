"""The appendix pages' data: one module per page of docs/appendix/."""
