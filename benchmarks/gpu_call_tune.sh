set -u; OUT=${OUT:?}; PY=python3
$PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src
F=benchmarks/recipes/char-speedrun-stack-cpu.yaml
( taskset -c 4-15 $PY benchmarks/llm_shakespeare_race.py cpu --nanogpt .peers/nanoGPT --text .peers/input.txt --repeats 1 --sides nanogpt --limit 165 --out /tmp/tune \
  --extra "old=recipes/shakespeare-char.yaml;eval_interval=200ba" \
  --extra "fast1200=$F;max_duration=1200ba" \
  --extra "b12=$F;data.batch_size=12;optimizer.lr=3e-3;optimizer.head_lr=3e-3;max_duration=2000ba;eval_interval=200ba" \
  --extra "b12plain=$F;model.mlp=gelu;model.qk_norm=false;model.zero_init_projections=false;data.batch_size=12;optimizer.lr=3e-3;optimizer.head_lr=3e-3;max_duration=2000ba;eval_interval=200ba" \
  --extra "b16=$F;data.batch_size=16;max_duration=1500ba;eval_interval=150ba" > $OUT/tune.log 2>&1
  tar czf $OUT/tune.tgz -C /tmp tune ) &
MFU_VARIANTS=cudnn+fused-ce+batch2x,cudnn+fused-ce+batch3x,cudnn+fused-ce+batch2x+model,cudnn+fused-ce+batch2x+coordesc MFU_PROFILE=cudnn+fused-ce+batch2x \
 LLM16_CAPS="280 75 0 130 0" taskset -c 0-3 bash benchmarks/gpu_session.sh llm16 > $OUT/session.log 2>&1
wait
tail -5 $OUT/session.log; cat $OUT/llm16.md | cut -c1-220; tail -25 $OUT/tune.log
