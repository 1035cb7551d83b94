"""Training in ``torchrun`` worker processes: the kernel's launcher, the worker entry point, and the job folder and
progress file between them. The training itself is :mod:`..finetune`'s, unchanged."""
