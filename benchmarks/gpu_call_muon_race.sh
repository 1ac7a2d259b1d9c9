# One device call (2026-12-02, fourth session, the last minutes): issue 19's CPU char race with
# the Muon recipe (recipes/shakespeare-char-fast.yaml), 3 repeats a side, all six at once on
# cores 4-15 (2 pinned cores each); meanwhile on cores 0-3 issue 16's training path of
# recipes/gpt-1b.yaml (activation checkpointing + torch.compile + clipping) with
# model.triton_kernels and model.autocast_residual on, beside the same run with both off, at 2
# layers of the 1.4B shape on a BPE-tokenised Tiny Shakespeare: the losses must agree.
#   OUT=results bash benchmarks/gpu_call_muon_race.sh      (carry: .whl .peers)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
( taskset -c 4-15 timeout -k 5 200 $PY benchmarks/llm_shakespeare_race.py cpu --nanogpt .peers/nanoGPT \
  --text .peers/input.txt --repeats 3 --out $OUT/char-cpu > $OUT/char-cpu.log 2>&1; rm -rf $OUT/char-cpu/*.log ) &
D=/tmp/rp; mkdir -p $D; T=.peers/input.txt
( export TESSERA_DATA_DIR=$D
  taskset -c 0-3 $PY -m tessera.cli data tokenizer train $T --out $D/tokenizer.json --vocab-size 2048
  taskset -c 0-3 $PY -m tessera.cli data tokenize $T --tokenizer $D/tokenizer.json --seq-len 2048 --out $D/corpus
  S="model.tokenizer=$D/corpus/tokenizer.json data.path=$D/corpus data.num_workers=0 model.n_layer=2 data.batch_size=16 max_duration=20ba eval_interval=10ba save_interval=null"
  for on in true false; do
    taskset -c 0-3 timeout -k 5 90 $PY -m tessera.cli train recipes/gpt-1b.yaml $S run_dir=/tmp/rp-$on name=run \
      model.triton_kernels=$on model.autocast_residual=$on; echo "recipe kernels=$on exit $?"
  done ) > $OUT/path.log 2>&1
grep -hE "exit|eval at batch|Error|error" $OUT/path.log | tail -12
wait
grep -E "^\|" $OUT/char-cpu/race.md | cut -c1-240
