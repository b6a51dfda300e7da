"""Chat data: records and their validation (``records``), chat templates (``templates``), assistant-only
tokenization (``tokenize``), packing and length bucketing (``packing``), mixtures (``mixture``), nested
subsamples (``subsample``), splits (``splits``), leakage checks (``leakage``), data sources (``sources``) and
the ``data check`` report (``check``). A foundation stage: it imports no later stage.
"""
