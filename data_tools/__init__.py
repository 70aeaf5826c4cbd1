"""Shard preparation (``mmcl shards``) and dataset builders.

One job per module: ``spec`` is a sample before decoding, ``sources``/``manifests`` list the input as specs,
``labels`` numbers a manifest's labels, ``plan`` cuts them into shards and parts, ``resume`` guards an output's plan,
``image``/``audio``/``text`` process one modality, ``fingerprints`` hash content, ``sample``
builds one shard sample, ``writer`` writes one shard, ``prepare`` runs the workers,
``merge`` writes the set-level files, ``readback``/``verify``/``stats`` read shards back,
``overlap`` finds evaluation samples in a training set, ``cli`` wires the ``shards`` subcommands. ``prepare.prepare_shards`` is the function to call
from Python.
"""
