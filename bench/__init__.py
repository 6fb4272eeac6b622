"""The benchmark: both executors side by side with the apps people write today, in one command (`python -m bench`)."""
