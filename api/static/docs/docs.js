// Renders /openapi.json as a readable list of operations, their parameters and responses.
"use strict";

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(schemaName).join(" | ");
  if (schema.enum) return schema.enum.join(" | ");
  return schema.type || "";
}

function fieldsTable(rows) {
  const table = element("table", {}, element("tr", {}, element("th", {}, "name"), element("th", {}, "type"), element("th", {}, "description")));
  for (const [name, type, description] of rows) {
    table.append(element("tr", {}, element("td", {}, element("code", {}, name)), element("td", {}, type), element("td", {}, description || "")));
  }
  return table;
}

function render(doc) {
  const root = document.getElementById("operations");
  root.textContent = "";
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const section = element("section", { class: "op" },
        element("h2", {}, element("span", { class: "method" }, method), element("span", { class: "path" }, path)),
        element("p", {}, op.summary || ""), element("p", { class: "muted" }, op.description || ""));
      const params = (op.parameters || []).map((p) => [`${p.name} (${p.in})`, schemaName(p.schema), p.description]);
      const form = op.requestBody && op.requestBody.content && Object.values(op.requestBody.content)[0];
      if (form && form.schema) {
        const schema = form.schema.$ref ? doc.components.schemas[schemaName(form.schema)] : form.schema;
        for (const [name, prop] of Object.entries(schema.properties || {})) params.push([name, schemaName(prop), prop.description]);
      }
      if (params.length) section.append(element("h3", {}, "Request"), fieldsTable(params));
      const responses = Object.entries(op.responses || {}).map(([status, response]) => {
        const content = response.content && Object.values(response.content)[0];
        return [status, content ? schemaName(content.schema) : "", response.description];
      });
      section.append(element("h3", {}, "Responses"), fieldsTable(responses));
      root.append(section);
    }
  }
}

fetch("/openapi.json").then((r) => r.json()).then(render).catch((error) => {
  document.getElementById("operations").textContent = `Could not load /openapi.json: ${error}`;
});
