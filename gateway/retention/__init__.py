"""Retention: how long history is kept, pruning it, archiving it, and watching the disk."""
