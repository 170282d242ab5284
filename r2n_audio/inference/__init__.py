"""Inference: export bundles, the Embedder, ONNX/TorchScript export, checkpoint importers."""
