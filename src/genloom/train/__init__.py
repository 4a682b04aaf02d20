"""The one training loop, its schedules and plots, and the per-family recipes that call it."""
