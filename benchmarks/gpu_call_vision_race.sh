# One device call (2026-12-02): the Fashion-MNIST race, recipes/fashion-mnist-fast.yaml against
# recipes/fashion-mnist-baseline.yaml, 3 repeats a side: CPU runs pinned 2 cores each (cores
# 0-11) all at once, GPU runs one after another on cores 12-15; everything cut at 480 s.
#   OUT=results bash benchmarks/gpu_call_vision_race.sh      (carry: .whl .gpu_data)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
$PY benchmarks/vision_race.py race --data .gpu_data/fashion-mnist --repeats 3 --deadline 480 \
  --cpu-time-limit 420 --gpu-time-limit 60 --out /tmp/vision-race > $OUT/vision-race.log 2>&1
echo "race exit $?"; cp /tmp/vision-race/race.json $OUT/vision-race.json; cp /tmp/vision-race/race.md $OUT/vision-race.md
grep -E "^\| (baseline|fast)|speed-up" $OUT/vision-race.md | cut -c1-400
