"""API contracts: what clients send (`XCreate`) and receive (`XPublic`)."""
