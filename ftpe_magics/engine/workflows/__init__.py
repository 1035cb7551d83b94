"""The workflows a :class:`~ftpe_magics.engine.session.Session` offers, one module each, every one a function of a
:class:`~ftpe_magics.engine.workbench.Workbench` (so each is usable and testable without a session):
prompting, few-shot scoring and its search, comparisons and learning curves, fine-tuning and its search, and the
tables of runs and adapters."""
