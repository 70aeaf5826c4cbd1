"""Shard preparation (``mmcl shards``) and dataset builders.

One job per module: ``spec`` is a sample before decoding, ``sources``/``manifests`` list the input as specs, ``plan`` cuts
them into shards and parts, ``image``/``audio``/``text`` process one modality, ``sample``
builds one shard sample, ``writer`` writes one shard, ``prepare`` runs the workers,
``merge`` writes the set-level files, ``readback``/``verify``/``stats`` read shards back,
``cli`` wires the ``shards`` subcommands. ``prepare.prepare_shards`` is the function to call
from Python.
"""
