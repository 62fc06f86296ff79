from remez import *
fb = lambda x: mp.erfc(x)
wb = lambda x: 1/mp.erf(x)
for (T, X1, ns) in [(0.9, 3.92, [6,7,8,9]), (0.9, 5.93, [14,16,18,20])]:
  for kind in ['inv', 'mob']:
   for cc in [0.5, 1.0, 2.0, 3.0]:
    for n in ns:
      if kind == 'inv':
        tf = lambda x, cc=cc: 1/(x+cc)
      else:
        tf = lambda x, cc=cc: (x-cc)/(x+cc)
      basis = [ (lambda k: (lambda x: mp.exp(-x*x)*tf(x)**k))(i) for i in range(n)]
      c, e = remez(fb, basis, wb, T, X1, npts=300)
      print('B', T, X1, kind, cc, n, 'abs', mp.nstr(mp.log(e,2),5), 'maxcoef', mp.nstr(max(abs(x) for x in c),3), flush=True)
