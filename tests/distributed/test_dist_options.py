"""Bad input for multi-process runs is refused before anything starts, naming the fix; the
launcher builds the torchrun command line each way of meeting (one node, static, elastic)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from dist_support import tiny_recipe
from torch import nn

from tessera.cli.main import main
from tessera.core.errors import ConfigError
from tessera.launch.local import LaunchOptions, torchrun_arguments
from tessera.parallel.blocks import find_blocks
from tessera.parallel.config import ParallelismConfig
from tessera.parallel.process_group import choose_backend


def test_port_in_use_is_refused_before_starting(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["train", str(recipe), "--nproc", "2", "--master-port", str(port)])
    assert code == 2
    assert f"--master-port {port}: the port is already in use" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tiny" / "logs").exists()  # nothing was started


def test_process_counts_are_checked(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    assert main(["train", str(recipe), "--nproc", "0"]) == 2
    assert "--nproc: '0' is not accepted: must be at least 1" in capsys.readouterr().err
    assert main(["train", str(recipe), "--nnodes", "2", "--nproc", "2"]) == 2
    assert "--rdzv-endpoint HOST:PORT" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_nccl_without_gpus_names_gloo():
    with pytest.raises(ConfigError, match="use backend 'gloo'"):
        choose_backend("nccl", torch.device("cpu"))
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_backend("auto", torch.device("cuda", 0)) == "nccl"


def test_fsdp_options_need_strategy_fsdp():
    with pytest.raises(ValueError, match="cpu_offload only apply to strategy 'fsdp'"):
        ParallelismConfig(cpu_offload=True)
    fsdp = ParallelismConfig(strategy="fsdp", cpu_offload=True, param_dtype="bfloat16")
    assert fsdp.reshard_after_forward and fsdp.sharding == "full"


def test_wrap_names_module_classes():
    model = nn.Sequential(nn.Linear(2, 2), nn.ModuleList([nn.ReLU(), nn.Tanh()]))
    assert [type(m) for m in find_blocks(model)] == [nn.ReLU, nn.Tanh]  # ModuleList members
    assert [type(m) for m in find_blocks(model, ["Linear"])] == [nn.Linear]
    with pytest.raises(ConfigError, match=r"no module of class Block.*Linear"):
        find_blocks(model, ["Block"])


def test_torchrun_command_lines():
    logs, program = Path("logs"), ["tessera.cli", "train", "r.yaml"]
    one_node = torchrun_arguments(LaunchOptions(nproc=4), logs, program)
    assert "--standalone" in one_node and "--nproc-per-node=4" in one_node
    assert one_node[-4:] == ["--module", *program]
    elastic = LaunchOptions(nproc=8, nnodes="2:4", rdzv_endpoint="head:29400", max_restarts=3)
    arguments = torchrun_arguments(elastic, logs, program)
    assert {"--rdzv-backend=c10d", "--rdzv-endpoint=head:29400", "--max-restarts=3"} <= set(
        arguments
    )
    static = LaunchOptions(nproc=8, nnodes="2", node_rank=1, master_addr="n0", master_port=29500)
    assert {"--node-rank=1", "--master-addr=n0", "--master-port=29500"} <= set(
        torchrun_arguments(static, logs, program)
    )
