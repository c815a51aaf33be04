"""Model body families: one module per family, each between its body and InferenceRequest."""
