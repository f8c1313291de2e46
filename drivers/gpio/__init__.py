"""migw."""
