"""Multi-factor authentication (issue 11): methods, policy, challenges, the second step."""
