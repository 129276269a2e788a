// Names shown to dispatchers (Chinese first) and the colours that tell device kinds apart on the map.

export const KINDS = ["sanitation", "muck", "enforcement", "inspector", "other"];

export const KIND = {
  sanitation: { label: "环卫", en: "Sanitation", short: "环", color: "#2e9d4f" },
  muck: { label: "渣土", en: "Muck", short: "渣", color: "#c0651a" },
  enforcement: { label: "执法", en: "Enforcement", short: "执", color: "#1f5fbf" },
  inspector: { label: "监督员", en: "Inspector", short: "督", color: "#8a3ab9" },
  other: { label: "其他", en: "Other", short: "他", color: "#5f6b7a" },
};

export const STATUS = {
  online: { label: "在线", color: "#1e9e4a" },
  offline: { label: "离线", color: "#8c959f" },
  never: { label: "未上线", color: "#c4c9cf" },
};

export const DELIVERY = {
  queued: "排队中",
  sent: "已发送",
  acknowledged: "已确认",
  failed: "失败",
  expired: "已过期",
};

// Delivery states after which nothing changes any more.
export const FINAL_DELIVERY = new Set(["acknowledged", "failed", "expired"]);

export function kindOf(kind) {
  return KIND[kind] ?? KIND.other;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, "0");
  const today = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

// Builds an element: el("div", {class: "x", "data-testid": "y"}, child, "text", ...).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
