"""Distributed training. The only package allowed to import horovod (an optional extra)."""
