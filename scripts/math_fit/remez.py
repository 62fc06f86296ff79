# Linear weighted minimax (Remez multi-exchange on a dense grid), mpmath.
import mpmath as mp
mp.mp.dps = 60

def remez(f, basis, w, a, b, npts=4000, iters=30, verbose=False):
    a = mp.mpf(a); b = mp.mpf(b)
    n = len(basis)
    # dense grid: chebyshev-ish + uniform mix
    grid = sorted(set([ (a+b)/2 - (b-a)/2*mp.cos(mp.pi*i/(npts-1)) for i in range(npts)] +
                      [a + (b-a)*i/(npts-1) for i in range(npts)]))
    fv = [f(x) for x in grid]
    wv = [w(x) for x in grid]
    gv = [[g(x) for g in basis] for x in grid]
    # initial reference: n+1 points
    m = n + 1
    ref = [int(round((len(grid)-1)*(1 - mp.cos(mp.pi*j/(m-1)))/2)) for j in range(m)]
    best = None
    for it in range(iters):
        A = mp.matrix(m, m); rhs = mp.matrix(m, 1)
        for j, idx in enumerate(ref):
            for i in range(n):
                A[j, i] = gv[idx][i]
            A[j, n] = (-1)**j / wv[idx]
            rhs[j] = fv[idx]
        sol = mp.lu_solve(A, rhs)
        c = [sol[i] for i in range(n)]
        E = sol[n]
        err = [wv[k]*(fv[k] - mp.fsum(c[i]*gv[k][i] for i in range(n))) for k in range(len(grid))]
        mx = max(abs(e) for e in err)
        if verbose: print(it, mp.nstr(abs(E), 5), mp.nstr(mx, 5))
        best = (c, mx)
        if mx <= abs(E) * (1 + mp.mpf('1e-6')):
            break
        # find local extrema with sign alternation
        ext = []
        for k in range(len(grid)):
            e = err[k]
            l = err[k-1] if k > 0 else None
            r = err[k+1] if k+1 < len(grid) else None
            if (l is None or abs(e) >= abs(l)) and (r is None or abs(e) >= abs(r)):
                ext.append(k)
        # merge same sign neighbours keeping larger
        alt = []
        for k in ext:
            if alt and (err[alt[-1]] >= 0) == (err[k] >= 0):
                if abs(err[k]) > abs(err[alt[-1]]):
                    alt[-1] = k
            else:
                alt.append(k)
        # reduce to m points: drop smallest from ends / pairs
        while len(alt) > m:
            # remove the smaller of the ends or the smallest adjacent pair
            if abs(err[alt[0]]) < abs(err[alt[-1]]):
                alt.pop(0)
            else:
                alt.pop()
        if len(alt) < m:
            if verbose: print('not enough extrema', len(alt))
            break
        ref = alt
    return best

def fmt32(c):
    import struct
    return [float(struct.unpack('f', struct.pack('f', float(x)))[0]) for x in c]

def round_to(c, bits):
    import struct
    out = []
    for x in c:
        if bits == 32:
            out.append(struct.unpack('f', struct.pack('f', float(x)))[0])
        else:
            out.append(float(x))
    return out
