"""Experiments: lessons of the course run with the real steps and recorded as DVC stages: vanishing
gradients in deep FFNs and RNNs (vanishing), transfer learning from a pretrained CNN (transfer), masked-LM pretraining
then fine-tuning an encoder (encoder).

Imports: any lower layer of components, models.
"""
