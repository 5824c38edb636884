"""Exports of a checkpoint for other runtimes (optional extras): `colbert.export.onnx`."""
