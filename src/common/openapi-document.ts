import type { OpenAPIObject, ReferenceObject, SchemaObject } from '@nestjs/swagger';

const SCHEMA_REF = '#/components/schemas/';

/**
 * Puts request-body schemas inline in their operation instead of behind a `$ref` to a component.
 * Clients generated with `openapi-typescript`'s defaults treat a property with a `default` as
 * always present except in request bodies and parameters, and a `$ref`'d component does not count
 * as "in a request body": `{ prompt }` alone did not type-check, although `aspectRatio`, `count` and
 * `paletteSize` are optional. Inline, the defaults stay documented and the fields optional. A
 * component that nothing else refers to afterwards is removed.
 */
export function inlineRequestBodies(document: OpenAPIObject): OpenAPIObject {
  const schemas = document.components?.schemas ?? {};
  const inlined = new Set<string>();
  for (const pathItem of Object.values(document.paths)) {
    for (const operation of Object.values(pathItem)) {
      const content = (operation as { requestBody?: { content?: Record<string, { schema?: SchemaObject | ReferenceObject }> } })?.requestBody?.content;
      for (const media of Object.values(content ?? {})) {
        const ref = (media.schema as ReferenceObject | undefined)?.$ref;
        if (!ref?.startsWith(SCHEMA_REF)) continue;
        const name = ref.slice(SCHEMA_REF.length);
        media.schema = structuredClone(schemas[name]);
        inlined.add(name);
      }
    }
  }
  const text = JSON.stringify(document);
  for (const name of inlined) if (!text.includes(`"${SCHEMA_REF}${name}"`)) delete schemas[name];
  return document;
}
