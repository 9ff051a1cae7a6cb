"""Paired bootstrap of a `seppoc compare --world video` folder: per clip, the trained score averaged over the
three training seeds minus the base score on the same prompt and noise; 4000 resamples of the 104 clips, seed 0.
Usage: python3 intervals.py runs/compare_video_10k"""
import json,random,statistics,sys
root=sys.argv[1]
base=[c['score'] for c in json.load(open(f'{root}/base/report.json'))['per_prompt']]
def rep(p): return json.load(open(p))
print('base', round(statistics.mean(base),4), 'smooth', round(statistics.mean(c['smoothness'] for c in rep(f'{root}/base/report.json')['per_prompt']),3), 'cons', round(statistics.mean(c['consistency'] for c in rep(f'{root}/base/report.json')['per_prompt']),3))
rng=random.Random(0)
for o in ['sft','dpo','seppo','seppo_indicator','spin','seppo_nogate']:
    seeds=[rep(f'{root}/{o}/seed{s}/final/report.json')['per_prompt'] for s in range(3)]
    per=[statistics.mean(seeds[s][i]['score'] for s in range(3)) for i in range(len(base))]
    d=[a-b for a,b in zip(per,base)]
    n=len(d); bs=[]
    for _ in range(4000):
        idx=[rng.randrange(n) for _ in range(n)]
        bs.append(sum(d[i] for i in idx)/n)
    bs.sort()
    sm=statistics.mean(statistics.mean(seeds[s][i]['smoothness'] for i in range(n)) for s in range(3))
    cs=statistics.mean(statistics.mean(seeds[s][i]['consistency'] for i in range(n)) for s in range(3))
    per_seed=[statistics.mean(c['score'] for c in seeds[s]) for s in range(3)]
    print(o, f"{statistics.mean(d):+.4f} [{bs[100]:+.3f}, {bs[3899]:+.3f}]", 'per seed', [round(x,4) for x in per_seed], 'smooth', round(sm,3), 'cons', round(cs,3))
