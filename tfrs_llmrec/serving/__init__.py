"""Serving: servable SavedModels (export), top-K index layers (indexes), the intention-aware
AlphaRec model (intention) and the TF-Serving-compatible HTTP server (server)."""
