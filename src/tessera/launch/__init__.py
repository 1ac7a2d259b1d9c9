"""Starting runs: the local multi-process launcher over torchrun's elastic agent, and the
`tessera consolidate` command for sharded checkpoints."""
