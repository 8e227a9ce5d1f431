"""Post-training quantization backends, one module each, each a plain function at its heart:

- `ort`: ONNX export with torch.onnx, ONNX Runtime graph optimization, dynamic/static int8 (no Optimum).
- `bnb`: bitsandbytes LLM.int8 and 4-bit (nf4/fp4) weights.
- `cast`: fp16/bf16 copies of a torch model.
- `artifacts`: tell these artifacts apart and load any of them for inference.
"""
