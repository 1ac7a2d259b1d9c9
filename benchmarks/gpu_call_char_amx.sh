# One device call (2026-12-02, fourth session): issue 19's char race on the GPU, 3 repeats a
# side, on cores 0-3; meanwhile on cores 4-15 the CPU char race with bf16 variants of the fast
# recipe (this host's CPU has AMX bf16 tiles), one run each beside one nanoGPT run.
#   OUT=results bash benchmarks/gpu_call_char_amx.sh      (carry: .whl .peers)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
R=recipes/shakespeare-char-fast.yaml; BF=precision=amp_bf16
( taskset -c 4-15 timeout -k 5 400 $PY benchmarks/llm_shakespeare_race.py cpu --nanogpt .peers/nanoGPT \
  --text .peers/input.txt --repeats 1 --out /tmp/char-cpu \
  --extra "bf16=$R;$BF" \
  --extra "bf16b24=$R;$BF;data.batch_size=24;optimizer.lr=6e-3;max_duration=1000ba;eval_interval=100ba" \
  --extra "bf16b48=$R;$BF;data.batch_size=48;optimizer.lr=8e-3;max_duration=600ba;eval_interval=60ba" \
  --extra "bf16muon=$R;$BF;optimizer.name=muon;optimizer.lr=0.02;optimizer.adam_lr=4e-3" > $OUT/char-cpu.log 2>&1 ) &
taskset -c 0-3 timeout -k 5 540 $PY benchmarks/llm_shakespeare_race.py gpu --nanogpt .peers/nanoGPT --text .peers/input.txt \
  --repeats 3 --budget 440 --limit 150 --out /tmp/race-gpu > $OUT/race-gpu.log 2>&1; echo "gpu race exit $?"
cp /tmp/race-gpu/race.json $OUT/race-gpu.json; cp /tmp/race-gpu/race.md $OUT/race-gpu.md; cp /tmp/race-gpu/race-unscored.json $OUT/ 2>/dev/null
wait
cp /tmp/char-cpu/race.json $OUT/char-cpu.json; cp /tmp/char-cpu/race.md $OUT/char-cpu.md
grep -E "^\|" $OUT/race-gpu.md | cut -c1-220 | head -12; grep -E "^\|" $OUT/char-cpu.md | cut -c1-220 | head -16
