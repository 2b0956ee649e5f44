#!/usr/bin/python3
"""PyTorch 1.13 fp32 vs CPU autocast bf16 on the train fixture (test/fixtures/train/step.safetensors):
first-step gradient cosines to the fp32 fixture and the two losses; the reference numbers quoted in
test/bf16.test.ts and native/README.md. Run with /usr/bin/python3."""
import json, os, struct, sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixture as mf
def read(path):
    b = open(path,'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; dt = {'F32': np.float32, 'I32': np.int32}[v['dtype']]
        out[k] = np.frombuffer(b[8+n+s:8+n+e], dtype=dt).reshape(v['shape'])
    return out
fx = read(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'train', 'step.safetensors'))
if __name__ == '__main__':
    torch.set_num_threads(1)
    for mode in ['fp32', 'bf16']:
        model = mf.TinyResNet(); sd = {k[5:]: torch.tensor(v) for k, v in fx.items() if k.startswith('init.')}
        model.load_state_dict(sd, strict=False); model.train()
        x = torch.tensor(fx['x']); y = torch.tensor(fx['y']).long(); w = torch.tensor(fx['w'])
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]; nod = [p for n, p in model.named_parameters() if p.ndim <= 1]
        opt = torch.optim.SGD([{"params": decay, "weight_decay": mf.WD}, {"params": nod, "weight_decay": 0.0}], lr=mf.LR, momentum=mf.MOM, nesterov=True)
        losses = []
        for s in range(2):
            B = mf.B; xb = x[s*B:(s+1)*B].permute(0,3,1,2); yb, wb = y[s*B:(s+1)*B], w[s*B:(s+1)*B]
            opt.zero_grad()
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=(mode == 'bf16')):
                logits = model(xb)
            per = F.cross_entropy(logits.float(), yb, reduction='none', label_smoothing=mf.SMOOTH)
            loss = (per * wb).sum() / wb.sum(); loss.backward(); losses.append(loss.item())
            if s == 0:
                cs = []
                for n, p in model.named_parameters():
                    g = p.grad.flatten().double(); r = torch.tensor(fx['grad.' + n]).flatten().double()
                    cs.append((g @ r / (g.norm() * r.norm())).item())
                print(mode, 'grad cosine to fp32 fixture: min %.4f median %.4f' % (min(cs), sorted(cs)[len(cs)//2]))
            opt.step()
        print(mode, 'losses', losses, 'fixture', fx['loss'])
