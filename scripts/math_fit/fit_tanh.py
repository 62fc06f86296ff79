from remez import *
f = lambda x: mp.tanh(x) - x
w = lambda x: 1/mp.tanh(x) if x != 0 else mp.mpf(1)
for T in [0.5, 0.625]:
  for n in [5,6,7,11,12,13,14]:
    c, e = remez(f, [(lambda k: (lambda x: x**k))(2*i+3) for i in range(n)], w, 0, T, npts=500)
    print('T', T, n, 'rel 2^', mp.nstr(mp.log(e,2),4), flush=True)
