"""Training: the train step (step), the generic loop every task reuses (loop), its optimizers and schedules (optim,
muon), mixed precision (precision), what an objective means for the network and its loss (objectives), loading a
trained model back (checkpoint), starting from earlier weights (transfer), and running on several processes: DDP
plumbing (distributed), torchrun on one machine (launch), a Kubeflow Trainer TrainJob on a cluster (trainjob).

Imports: components.core, components.config, components.data, models.
"""
