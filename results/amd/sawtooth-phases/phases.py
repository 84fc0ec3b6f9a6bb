import json,sys,statistics
def phases(s):
    f=[];d=[];r=[];start=0
    for end,p in enumerate(s):
        if p.get('afterRelease'):
            seg=range(start+1,end)
            peak=max(seg,key=lambda k:s[k]['liveBytes'])
            f.append(s[peak]['seconds']-s[start]['seconds']); d.append(s[end-1]['seconds']-s[peak]['seconds']); r.append(s[end]['seconds']-s[end-1]['seconds'])
            start=end
    return statistics.median(f),statistics.median(d),statistics.median(r)
d=json.loads(open(sys.argv[1]).readline())
reps=d['repetitions']
ns=statistics.median([x['seconds']*1e9/x['ops'] for x in reps])
ph=[phases(x['rssSeries']) for x in reps]
f=statistics.median([p[0] for p in ph])*1e3; dr=statistics.median([p[1] for p in ph])*1e3; rl=statistics.median([p[2] for p in ph])*1e3
print("%-9s %6.2f ns/op  fill %.2f drain %.2f release %.2f ms  rssAfter %.1f MiB"%(sys.argv[2],ns,f,dr,rl,reps[-1]['rssAfterBytes']/2**20))
