"""Text in, batches out: corpus readers, tokenizers and batching."""
