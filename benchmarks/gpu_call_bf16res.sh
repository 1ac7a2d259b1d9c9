# One device call (2026-12-02, fourth session): issue 16's 1.4B MFU step with the residual
# stream in bf16 (model.autocast_residual) beside the previous best (Triton kernels + whole-model
# compile) on cores 0-3; meanwhile issue 19's CPU char race with context/learning-rate variants
# of the fast recipe, one run each beside one nanoGPT run, 2 pinned cores each on cores 4-15.
#   OUT=results bash benchmarks/gpu_call_bf16res.sh      (carry: .whl .peers)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
lscpu | grep -iE "model name|flags" | grep -oE "Model name.*|amx_bf16|avx512_bf16" | sort -u
R=recipes/shakespeare-char-fast.yaml
C128="model.max_seq_len=128;data.seq_len=128;data.eval_max_sequences=120"
( taskset -c 4-15 timeout -k 5 330 $PY benchmarks/llm_shakespeare_race.py cpu --nanogpt .peers/nanoGPT \
  --text .peers/input.txt --repeats 1 --out /tmp/char-cpu \
  --extra "c128b6=$R;$C128;data.batch_size=6" \
  --extra "c128b6lr6=$R;$C128;data.batch_size=6;optimizer.lr=6e-3;max_duration=1000ba;eval_interval=100ba" \
  --extra "c256b3=$R;model.max_seq_len=256;data.seq_len=256;data.eval_max_sequences=60;data.batch_size=3" \
  --extra "lr6x1000=$R;optimizer.lr=6e-3;max_duration=1000ba;eval_interval=100ba" > $OUT/char-cpu.log 2>&1 ) &
M="--sizes gpt-1b --steps 5 --warmup 2 --no-generation --no-hf"
B3=cudnn+fused-ce+batch3x+coordesc+triton
timeout -k 5 330 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3+model+bf16res,$B3+model,$B3+bf16res \
  --profile $B3+model+bf16res --out $OUT/mfu > $OUT/mfu.log 2>&1; echo "mfu exit $?"
grep -hE "^\| tessera" $OUT/mfu/mfu.md
wait
cp /tmp/char-cpu/race.json $OUT/char-cpu.json; cp /tmp/char-cpu/race.md $OUT/char-cpu.md
grep -E "^\|" $OUT/char-cpu.md | cut -c1-220 | head -30
