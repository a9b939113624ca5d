"""Password reset by a single-use link mailed to the account's address."""
