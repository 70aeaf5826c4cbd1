"""Zero-shot evaluation: classification, retrieval, embedding geometry."""
