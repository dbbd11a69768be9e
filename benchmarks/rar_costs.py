"""RAR's pieces against one plain forward+backward pass of MiniLM on the batch of
benchmarks/method_costs.py (interleaved, medians): the tied-vocabulary head's forward+backward and the
ascent direction ∂L_C/∂δ computed apart from the parameter gradients (docs/results.md §10).

    python benchmarks/rar_costs.py
"""
import statistics, time, torch
from advviz.data import load_dataset
from advviz.models import build_model
from advviz.methods.rar import RARHead, reconstruction_loss
torch.manual_seed(0)
ds = load_dataset("sst2", "dev").subset(16, 0)  # the batch of benchmarks/method_costs.py
core, _ = build_model("minilm", ds.texts, 2)
core.train()
enc = core.tokenizer.batch(ds.texts)
ids, att = torch.as_tensor(enc["input_ids"]), torch.as_tensor(enc["attention_mask"])
head = RARHead.for_classifier(core)
y = torch.as_tensor(ds.labels)
def plain():
    out = core(input_ids=ids, attention_mask=att)
    torch.nn.functional.cross_entropy(out.logits, y).backward()
    return out
out = plain()
tokens = out.tokens.detach().requires_grad_(True)
mask = core.perturbable_mask(ids, att)
def headpass():
    reconstruction_loss(head, tokens, ids, mask).backward()
a, b = [], []
for _ in range(3): plain(); headpass()
for _ in range(12):
    t = time.perf_counter(); plain(); a.append(time.perf_counter() - t)
    t = time.perf_counter(); headpass(); b.append(time.perf_counter() - t)
print(f"batch {tuple(ids.shape)}, {int(mask.sum())} reconstructed tokens, vocab {core.embedding_matrix().shape[0]}")
print(f"plain pass {1000*statistics.median(a):.0f} ms, head fwd+bwd {1000*statistics.median(b):.0f} ms, "
      f"ratio {statistics.median(b)/statistics.median(a):.2f}")
# the separate ascent direction ∂L_C/∂δ (no parameter gradients), as RAR/CARL compute it beside backward(total)
emb = core.embed(ids).detach()
def grad_delta():
    d = torch.zeros_like(emb, requires_grad=True)
    o = core(inputs_embeds=emb + d, attention_mask=att)
    torch.autograd.grad(torch.nn.functional.cross_entropy(o.logits, y), d)
def fwd_only():
    with torch.enable_grad():
        core(inputs_embeds=emb, attention_mask=att)
c, f = [], []
for _ in range(2): grad_delta(); fwd_only()
for _ in range(10):
    t = time.perf_counter(); grad_delta(); c.append(time.perf_counter() - t)
    t = time.perf_counter(); fwd_only(); f.append(time.perf_counter() - t)
a2 = statistics.median(a)
print(f"forward+∂/∂δ only {1000*statistics.median(c):.0f} ms ({statistics.median(c)/a2:.2f} pass), "
      f"forward alone {1000*statistics.median(f):.0f} ms ({statistics.median(f)/a2:.2f} pass): "
      f"the extra backward to δ ≈ {(statistics.median(c)-statistics.median(f))/a2:.2f} pass")
