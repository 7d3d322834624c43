"""Graph passes, one per file (see ``passes/pipeline.py`` for their order once the compiler pipeline exists)."""
