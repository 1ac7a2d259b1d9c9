# Issue 16 MFU (best stack + profile) and issue 19 GPU race variants on the GPU; CPU race
# variants on cores 4-15 at the same time (the GPU work on cores 0-3).
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src
O=recipes/shakespeare-char.yaml
( taskset -c 4-15 $PY benchmarks/llm_shakespeare_race.py cpu --nanogpt .peers/nanoGPT --text .peers/input.txt --repeats 1 --sides nanogpt --limit 165 --out /tmp/tune2 \
  --extra "lr4=$O;optimizer.lr=4e-3;eval_interval=200ba" \
  --extra "o1500=$O;max_duration=1500ba;eval_interval=150ba" \
  --extra "wsd1500=benchmarks/recipes/char-speedrun-stack-cpu.yaml;model.mlp=gelu;model.qk_norm=false;model.zero_init_projections=false;data.batch_size=12;optimizer.lr=3e-3;optimizer.head_lr=3e-3;max_duration=1500ba;eval_interval=150ba" \
  --extra "relu2=$O;model.mlp=relu2;eval_interval=200ba" \
  --extra "qknorm=$O;model.qk_norm=true;eval_interval=200ba" > $OUT/tune2.log 2>&1 ) &
MFU_BEST=cudnn+fused-ce+batch3x+coordesc MFU_VARIANTS=cudnn+fused-ce+batch3x+coordesc,cudnn+fused-ce+batch3x+coordesc+model MFU_PROFILE=cudnn+fused-ce+batch3x+coordesc \
 LLM16_CAPS="200 0 0 0 0" taskset -c 0-3 bash benchmarks/gpu_session.sh llm16 > $OUT/session.log 2>&1
G="model.n_layer=6;model.n_head=6;model.d_model=384;model.max_seq_len=256;model.dropout=0.2;data.seq_len=256;data.eval_batch_size=256;precision=amp_bf16;eval_interval=50ba;scheduler.t_warmup=100ba;optimizer.lr=0.002;data.window_stride=1"
P="model.mlp=gelu;model.qk_norm=false;model.zero_init_projections=false"
taskset -c 0-3 timeout 300 $PY benchmarks/llm_shakespeare_race.py gpu --nanogpt .peers/nanoGPT --text .peers/input.txt --repeats 1 --budget 270 --limit 110 --out /tmp/gpurace \
  --extra "h=$O;$G;data.batch_size=128;max_duration=1000ba" --extra "h700=$O;$G;data.batch_size=128;max_duration=700ba" \
  --extra "plainmuon=benchmarks/recipes/char-speedrun-stack-gpu.yaml;$P" > $OUT/gpurace.log 2>&1
wait
cp /tmp/tune2/race.json $OUT/tune2.json; cp /tmp/gpurace/race.json $OUT/gpurace.json
grep -v "^{" $OUT/llm16.md | cut -c1-200 | head -40; tail -14 $OUT/gpurace.log; tail -16 $OUT/tune2.log
