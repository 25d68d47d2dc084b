"""Does unlearned knowledge come back? A never-learned reference model, relearning and quantization.

`oracle` writes the corpus without the forget people's biographies, `relearn` fine-tunes an unlearned
model on related data, `quantize` rounds its weights, `quality` turns per-item verdicts into recovery
shares and TOFU's forget quality, and `stage` runs all of it inside a study.
"""
