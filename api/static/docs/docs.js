// Renders /openapi.json: the authentication, every operation (parameters, request bodies, responses with
// their headers and examples) and every model. Text is inserted as text, never as markup; the only
// formatting descriptions get is `code` spans.
"use strict";

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// A description as text with `code` spans (CommonMark's inline code, the only markup the document uses).
function prose(text, tag = "p") {
  const node = element(tag, { class: "prose" });
  String(text || "").split("`").forEach((part, index) => node.append(index % 2 ? element("code", {}, part) : part));
  return node;
}

function refName(ref) {
  return ref.split("/").pop();
}

function schemaLink(name) {
  return element("a", { href: `#schema-${name}` }, name);
}

// A schema as a short type: a link to a model, "array of ...", "one of ...", a format, an enum.
function typeOf(schema) {
  const node = element("span", { class: "type" });
  if (!schema) return node;
  if (schema.$ref) {
    node.append(schemaLink(refName(schema.$ref)));
  } else if (schema.anyOf || schema.oneOf) {
    (schema.anyOf || schema.oneOf).forEach((part, index) => {
      if (index) node.append(" or ");
      node.append(typeOf(part));
    });
  } else if (schema.type === "array") {
    node.append("array of ", typeOf(schema.items));
  } else if (schema.enum) {
    node.append(`one of: ${schema.enum.join(", ")}`);
  } else if (schema.const !== undefined) {
    node.append(JSON.stringify(schema.const));
  } else if (schema.format === "binary") {
    node.append("file");
  } else if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    node.append("map of ", typeOf(schema.additionalProperties));
  } else {
    node.append(schema.type || "any");
    if (schema.format) node.append(` (${schema.format})`);
  }
  return node;
}

function limits(schema) {
  const found = [];
  if (!schema) return "";
  for (const [key, label] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["minItems", "items ≥"], ["maxItems", "items ≤"]]) {
    if (schema[key] !== undefined) found.push(`${label} ${schema[key]}`);
  }
  if (schema.default !== undefined) found.push(`default ${JSON.stringify(schema.default)}`);
  return found.join(", ");
}

function table(headings, rows) {
  const body = element("tbody");
  for (const row of rows) body.append(element("tr", {}, ...row.map((cell, index) => element("td", { "data-label": headings[index] }, cell))));
  return element("table", {}, element("thead", {}, element("tr", {}, ...headings.map((h) => element("th", {}, h)))), body);
}

function example(value, label = "Example") {
  return element("details", { class: "example" }, element("summary", {}, label), element("pre", {}, JSON.stringify(value, null, 2)));
}

function fields(schema) {
  const required = new Set(schema.required || []);
  return table(
    ["field", "type", "description"],
    Object.entries(schema.properties || {}).map(([name, prop]) => [
      element("span", {}, element("code", {}, name), required.has(name) ? element("span", { class: "required" }, " required") : null),
      typeOf(prop),
      element("span", {}, prose(prop.description, "span"), limits(prop) ? element("span", { class: "muted" }, ` (${limits(prop)})`) : null),
    ]),
  );
}

function security(doc, op) {
  if (!op.security || !op.security.length) return element("p", { class: "badge public" }, "No API key needed");
  const names = op.security.flatMap((requirement) => Object.keys(requirement));
  const badge = element("p", { class: "badge" }, "API key: ");
  names.forEach((name, index) => {
    if (index) badge.append(" or ");
    badge.append(element("a", { href: `#auth-${name}` }, name));
  });
  return badge;
}

function requestBody(doc, body) {
  const section = element("div", { class: "body" }, element("h4", {}, "Request body"));
  if (body.description) section.append(prose(body.description));
  for (const [mediaType, media] of Object.entries(body.content || {})) {
    const schema = media.schema && media.schema.$ref ? doc.components.schemas[refName(media.schema.$ref)] : media.schema;
    section.append(element("p", {}, element("code", {}, mediaType), ": ", typeOf(media.schema)));
    if (schema && schema.properties) section.append(fields(schema));
    if (media.encoding) {
      const parts = Object.entries(media.encoding).filter(([, encoding]) => encoding.contentType);
      if (parts.length) section.append(element("p", { class: "muted" }, `File parts: ${parts.map(([name, e]) => `${name} (${e.contentType})`).join(", ")}`));
    }
    if (media.example !== undefined) section.append(example(media.example));
  }
  return section;
}

function responses(op) {
  const list = element("div", { class: "responses" }, element("h4", {}, "Responses"));
  for (const [status, response] of Object.entries(op.responses || {})) {
    const item = element("div", { class: "response" }, element("p", {}, element("strong", {}, status), " ", prose(response.description, "span")));
    for (const [mediaType, media] of Object.entries(response.content || {})) {
      item.append(element("p", { class: "muted" }, element("code", {}, mediaType), ": ", typeOf(media.schema)));
      if (media.example !== undefined) item.append(example(media.example, `Example ${status}`));
    }
    const headers = Object.entries(response.headers || {});
    if (headers.length) {
      item.append(table(["header", "type", "description"], headers.map(([name, header]) => [
        element("span", {}, element("code", {}, name), header.required ? element("span", { class: "required" }, " always") : null),
        typeOf(header.schema),
        prose(header.description, "span"),
      ])));
    }
    list.append(item);
  }
  return list;
}

function operation(doc, path, method, op) {
  const section = element("section", { class: "op", id: `op-${op.operationId}` },
    element("h3", {}, element("span", { class: `method ${method}` }, method.toUpperCase()), " ", element("span", { class: "path" }, path)),
    prose(op.summary), op.description ? prose(op.description, "p") : null, security(doc, op));
  const parameters = op.parameters || [];
  if (parameters.length) {
    section.append(element("h4", {}, "Parameters"), table(["name", "type", "description"], parameters.map((p) => [
      element("span", {}, element("code", {}, p.name), ` (${p.in})`, p.required ? element("span", { class: "required" }, " required") : null),
      typeOf(p.schema),
      element("span", {}, prose(p.description, "span"), p.example !== undefined ? element("span", { class: "muted" }, ` e.g. ${p.example}`) : null),
    ])));
  }
  if (op.requestBody) section.append(requestBody(doc, op.requestBody));
  section.append(responses(op));
  return section;
}

function authentication(doc) {
  const section = element("section", { id: "authentication" }, element("h2", {}, "Authentication"));
  for (const [name, scheme] of Object.entries((doc.components || {}).securitySchemes || {})) {
    const how = scheme.type === "http" ? `HTTP ${scheme.scheme}: Authorization: Bearer <key>` : `${scheme.in} ${scheme.name}: <key>`;
    section.append(element("div", { class: "scheme", id: `auth-${name}` }, element("h3", {}, name), element("p", {}, element("code", {}, how)), prose(scheme.description)));
  }
  return section;
}

function model(name, schema) {
  const section = element("section", { class: "schema", id: `schema-${name}` }, element("h3", {}, name));
  if (schema.description) section.append(prose(schema.description));
  if (schema.properties) section.append(fields(schema));
  else section.append(element("p", {}, typeOf(schema)));
  (schema.examples || []).forEach((value) => section.append(example(value)));
  return section;
}

function render(doc) {
  document.getElementById("title").textContent = `${doc.info.title} API ${doc.info.version}`;
  document.getElementById("summary").replaceWith(prose(doc.info.description));
  const servers = document.getElementById("servers");
  for (const server of doc.servers || []) servers.append(element("li", {}, element("code", {}, server.url), ` ${server.description || ""}`));
  const root = document.getElementById("operations");
  root.textContent = "";
  root.append(authentication(doc));
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  for (const [tag, sections] of byTag) root.append(element("h2", {}, tag), ...sections);
  const models = element("section", { id: "schemas" }, element("h2", {}, "Models"));
  for (const [name, schema] of Object.entries(doc.components.schemas)) models.append(model(name, schema));
  root.append(models);
  document.body.dataset.rendered = "true";
}

fetch("/openapi.json").then((r) => r.json()).then(render).catch((error) => {
  document.getElementById("operations").textContent = `Could not load /openapi.json: ${error}`;
});
