"""Text and token data: tokenizers trained on the training split (tokenization), text classification
splits (prepare), causal-LM windows, masked-LM windows and seq2seq pairs (lm, mlm), and the pretrained
all-MiniLM-L6-v2 vocabulary and weights (minilm).

Imports: components.core, components.config, components.data.
"""
