"""Plotly figures for the pages (drawing only: every number comes from a library result)."""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

SEQUENTIAL = "Cividis"  # colour-blind-safe, perceptually uniform
# Okabe–Ito: a qualitative palette that colour-blind readers can tell apart
QUALITATIVE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
CELL_W, ROW_H = 92, 64
MARK_COLOR = "#D55E00"  # Okabe–Ito vermillion: the outline of a token a discrete attack changed


def _cell(t: dict) -> tuple[str, str]:
    """(label, hover) of one token cell: ``moved_to (nearest)`` as in SPGD's Figure 2."""
    moved, nearest = t.get("moved_to"), t.get("nearest")
    label = f"{html.escape(moved or '·')}<br>({html.escape(str(nearest))})"
    cos, rank = t.get("cosine"), t.get("neighbor_rank")
    hover = (f"<b>{html.escape(t['token'])}</b> → {html.escape(moved or '(not moved)')}<br>"
             f"‖δ‖ = {t['norm']:.4f}<br>nearest to v+δ: {html.escape(str(nearest))}"
             + (f"<br>cosine(δ, direction) = {cos:.3f}" if cos is not None else "")
             + (f"<br>neighbour rank = {rank}" if rank is not None else ""))
    return label, hover


def token_heatmap(rows: list[tuple[str, dict]], zmax: float) -> go.Figure:
    """Rows = (row label, inspect result) sharing one tokenization; columns = tokens; colour = ‖δᵢ‖.

    ``zmax`` is shared by every heatmap on the page so rows and figures compare honestly."""
    tokens = [t["token"] for t in rows[0][1]["tokens"]]
    z, text, hover = [], [], []
    for _, r in rows:
        z.append([t["norm"] for t in r["tokens"]])
        cells = [_cell(t) for t in r["tokens"]]
        text.append([c[0] for c in cells])
        hover.append([c[1] for c in cells])
    labels = [lab for lab, _ in rows]
    marks = []  # (row, column, word): tokens a discrete attack changed (``r["changed"]``: position -> word)
    for ri, (_, r) in enumerate(rows):
        changed = r.get("changed") or {}
        for ci, t in enumerate(r["tokens"]):
            if t["index"] in changed:
                marks.append((ri, ci, changed[t["index"]]))
                text[ri][ci] += f"<br>⇒ {html.escape(str(changed[t['index']]))}"
                hover[ri][ci] += f"<br><b>TextAttack changed it to: {html.escape(str(changed[t['index']]))}</b>"
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(tokens))), y=labels, text=text, customdata=hover, texttemplate="%{text}",
        textfont={"size": 11}, hovertemplate="%{customdata}<extra>%{y}</extra>", colorscale=SEQUENTIAL,
        zmin=0.0, zmax=max(zmax, 1e-9), xgap=2, ygap=2, colorbar={"title": {"text": "‖δᵢ‖"}, "thickness": 12}))
    fig.update_xaxes(tickvals=list(range(len(tokens))), ticktext=[html.escape(t) for t in tokens], side="top",
                     tickfont={"size": 13})
    fig.update_yaxes(autorange="reversed", tickfont={"size": 12})
    for ri, ci, _ in marks:
        fig.add_shape(type="rect", x0=ci - 0.5, x1=ci + 0.5, y0=ri - 0.5, y1=ri + 0.5,
                      line={"color": MARK_COLOR, "width": 4})
    fig.update_layout(height=90 + ROW_H * len(rows), width=max(520, 220 + CELL_W * len(tokens)),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def accuracy_curves(df: pd.DataFrame, attack: str) -> go.Figure:
    """Accuracy under attack vs ε, one line per model, starting at ε = 0 (clean accuracy on the same
    examples) when the rows carry ``clean_accuracy``."""
    fig = go.Figure()
    for i, (model, g) in enumerate(df.groupby("model", sort=False)):
        g = g.sort_values("epsilon")
        x, y = list(g["epsilon"]), list(g["accuracy"])
        if "clean_accuracy" in g and g["clean_accuracy"].notna().any() and 0.0 not in x:
            x, y = [0.0, *x], [float(g["clean_accuracy"].dropna().iloc[0]), *y]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=model,
                                 line={"color": QUALITATIVE[i % len(QUALITATIVE)]},
                                 marker={"symbol": ["circle", "square", "diamond", "triangle-up"][i % 4], "size": 9}))
    fig.update_layout(xaxis_title="ε", yaxis_title=f"accuracy under {attack}", yaxis_range=[0, 1.02],
                      height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})
    return fig


def discrete_bars(df: pd.DataFrame) -> go.Figure:
    """Clean accuracy and accuracy under each TextAttack recipe, grouped by model."""
    fig = go.Figure()
    first = df.drop_duplicates("model")
    fig.add_trace(go.Bar(x=first["model"], y=first["clean_accuracy"], name="clean", marker_color="#999999"))
    for i, (recipe, g) in enumerate(df.groupby("recipe", sort=False)):
        fig.add_trace(go.Bar(x=g["model"], y=g["accuracy"], name=f"under {recipe}",
                             marker_color=QUALITATIVE[i % len(QUALITATIVE)],
                             customdata=g[["attack_success_rate", "mean_queries"]].to_numpy(),
                             hovertemplate="accuracy %{y:.3f}<br>success rate %{customdata[0]:.3f}<br>"
                                           "queries %{customdata[1]:.1f}<extra>%{x}</extra>"))
    fig.update_layout(barmode="group", yaxis_title="accuracy", yaxis_range=[0, 1.02], height=340,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})
    return fig


def projection_scatter(df: pd.DataFrame, segments: bool, title: str) -> go.Figure:
    """Sentence representations in 2-D: colour = gold label, marker = original / adversarial."""
    fig = go.Figure()
    scatter = go.Scatter if len(df) <= 4000 else go.Scattergl  # SVG draws faster than WebGL for small maps
    has_pairs = "pair" in df and (df["kind"] != "orig").any()
    if segments and has_pairs:
        xs, ys = [], []
        for _, g in df.groupby("pair"):
            if len(g) == 2:
                xs += [*g["x"], None]
                ys += [*g["y"], None]
        fig.add_trace(scatter(x=xs, y=ys, mode="lines", line={"color": "rgba(120,120,120,0.35)", "width": 1},
                                   hoverinfo="skip", name="orig → adv", showlegend=True))
    label_col = "label_name" if "label_name" in df else "label"
    pred_col = "pred_name" if "pred_name" in df else "pred"
    for i, (lab, g) in enumerate(df.groupby(label_col, sort=True)):
        for kind, symbol in (("orig", "circle"), ("adv", "x")):
            gk = g[g["kind"] == kind]
            if gk.empty:
                continue
            hover = [f"{html.escape(str(t)[:120])}<br>label {lab} · pred {p}" for t, p in zip(gk["text"], gk[pred_col])]
            fig.add_trace(scatter(
                x=gk["x"], y=gk["y"], mode="markers", name=f"{lab} ({'original' if kind == 'orig' else 'adversarial'})",
                marker={"color": QUALITATIVE[i % len(QUALITATIVE)], "symbol": symbol, "size": 7,
                        "opacity": 0.8 if kind == "orig" else 0.9, "line": {"width": 0}},
                text=hover, hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=title, height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.08}, xaxis={"showticklabels": False},
                      yaxis={"showticklabels": False})
    return fig


def train_curve(df: pd.DataFrame, column: str, title: str) -> go.Figure:
    """One logged quantity against the optimiser step (markers, so a single evaluation shows)."""
    fig = go.Figure(go.Scatter(x=df["step"], y=df[column], mode="lines+markers", line={"color": QUALITATIVE[0]}))
    fig.update_layout(title=title, xaxis_title="step", height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def _targets(moved_to: list, n: int = 3) -> str:
    return " · ".join(f"{html.escape(str(w))} ({c})" for w, c in (moved_to or [])[:n]) or "(never moved)"


def _x_of(df: pd.DataFrame) -> tuple[list, str]:
    """Training-set frequency + 1 on a log axis (0 = never seen in training), or the count when the
    training data was not readable."""
    if "frequency" in df and df["frequency"].notna().all():
        return list(df["frequency"].astype(float) + 1.0), "training-set frequency + 1 (log)"
    return list(df["count"].astype(float)), "occurrences in the split (log; training data not available)"


def atlas_scatter(df: pd.DataFrame, title: str) -> go.Figure:
    """One point per word: x = training frequency (log), y = mean ‖δ‖, colour = top_share;
    hover = the word and its most frequent moved_to targets."""
    x, xtitle = _x_of(df)
    hover = [f"<b>{html.escape(str(w))}</b> · {c} occurrences<br>mean ‖δ‖ {m:.4f} · top-3 share {t:.2f}<br>"
             f"saliency {s:.4f} · flip share {f:.2f}<br>moved to: {_targets(mt)}"
             for w, c, m, t, s, f, mt in zip(df["word"], df["count"], df["mean_norm"], df["top_share"],
                                            df["saliency"], df["flip_share"], df["moved_to"])]
    scatter = go.Scatter if len(df) <= 3000 else go.Scattergl
    fig = go.Figure(scatter(
        x=x, y=df["mean_norm"], mode="markers", text=hover, hovertemplate="%{text}<extra></extra>",
        marker={"color": df["top_share"], "colorscale": SEQUENTIAL, "cmin": 0.0, "cmax": 1.0, "size": 8,
                "opacity": 0.85, "line": {"width": 0},
                "colorbar": {"title": {"text": "top-3 share"}, "thickness": 12}}))
    fig.update_layout(title=title, xaxis={"type": "log", "title": xtitle}, yaxis_title="mean ‖δᵢ‖",
                      height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def atlas_two_models(df: pd.DataFrame, names: tuple[str, str], mode: str) -> go.Figure:
    """Comparison of two models' atlases on the words both have. ``mode`` "delta": y = Δ mean ‖δ‖
    (B − A), colour = Δ top-3 share (diverging, 0 white); "both": each model's mean ‖δ‖ in its colour."""
    df = df[df["mean_norm_b"].notna()]
    x, xtitle = _x_of(df)
    a, b = names
    scatter = go.Scatter if len(df) <= 3000 else go.Scattergl
    fig = go.Figure()
    if mode == "delta":
        hover = [f"<b>{html.escape(str(w))}</b> · {c} occurrences<br>mean ‖δ‖ {ma:.4f} → {mb:.4f} (Δ {d:+.4f})"
                 f"<br>top-3 share {ta:.2f} → {tb:.2f} (Δ {dt:+.2f})<br>moved to ({html.escape(a)}): {_targets(mt)}"
                 for w, c, ma, mb, d, ta, tb, dt, mt in zip(
                     df["word"], df["count"], df["mean_norm"], df["mean_norm_b"], df["delta_mean_norm"],
                     df["top_share"], df["top_share_b"], df["delta_top_share"], df["moved_to"])]
        fig.add_trace(scatter(
            x=x, y=df["delta_mean_norm"], mode="markers", text=hover, hovertemplate="%{text}<extra></extra>",
            marker={"color": df["delta_top_share"], "colorscale": "RdBu", "cmid": 0.0, "size": 8, "opacity": 0.9,
                    "line": {"width": 0.5, "color": "#888"},
                    "colorbar": {"title": {"text": "Δ top-3 share"}, "thickness": 12}}))
        fig.add_hline(y=0.0, line={"color": "#888", "width": 1, "dash": "dot"})
        ytitle = "Δ mean ‖δᵢ‖ (B − A)"
    else:
        for i, (label, col) in enumerate(((a, "mean_norm"), (b, "mean_norm_b"))):
            hover = [f"<b>{html.escape(str(w))}</b> · {html.escape(label)}<br>mean ‖δ‖ {m:.4f}"
                     for w, m in zip(df["word"], df[col])]
            fig.add_trace(scatter(x=x, y=df[col], mode="markers", name=label, text=hover,
                                  hovertemplate="%{text}<extra></extra>",
                                  marker={"color": QUALITATIVE[i], "size": 7, "opacity": 0.75,
                                          "symbol": ["circle", "diamond"][i], "line": {"width": 0}}))
        ytitle = "mean ‖δᵢ‖"
    fig.update_layout(xaxis={"type": "log", "title": xtitle}, yaxis_title=ytitle, height=460,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})
    return fig


def pair_bars(pairs: list[dict], title: str) -> go.Figure:
    """The most frequent word → moved_to pairs, ranked (most frequent on top)."""
    labels = [f"{html.escape(p['word'])} → {html.escape(p['moved_to'])}" for p in pairs]
    fig = go.Figure(go.Bar(x=[p["count"] for p in pairs], y=labels, orientation="h",
                           marker={"color": QUALITATIVE[0]}, hovertemplate="%{y}: %{x} times<extra></extra>"))
    fig.update_yaxes(autorange="reversed", tickfont={"size": 12})
    fig.update_layout(title=title, xaxis_title="times moved", height=max(260, 60 + 22 * len(pairs)),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
