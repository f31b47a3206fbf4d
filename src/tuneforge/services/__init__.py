"""Business rules. Services own the transaction and scope every query to its owner."""
