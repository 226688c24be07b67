"""torch -> ONNX export of encoder and decoder graphs, with parity validation. Needs samedge[export]."""
