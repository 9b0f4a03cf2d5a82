#!/usr/bin/env node
// The public declarations of a .d.ts that carry no JSDoc description, one a
// line; and, prefixed "twice:", those preceded by more than one JSDoc block
// (an editor shows only the last, so a description in the first is lost).
//
//   node undocumented.cjs TYPESCRIPT_DIR FILE.d.ts
//
// Public: what the module exports, and the members of its exported classes
// but #private ones. A constructor's @param tags are enough; a setter is
// covered by its getter's description.

const fs = require('node:fs');

const [typescript, file] = process.argv.slice(2);
const ts = require(typescript);
const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);

const docs = (node) => node.jsDoc ?? [];
const described = (node) =>
  docs(node).some((doc) => String(ts.getTextOfJSDocComment(doc.comment) ?? '').trim() !== '');
const nameOf = (node) => (node.name ? node.name.getText(source) : 'constructor');
const found = [];

function check(node, name, { constructor = false } = {}) {
  if (docs(node).length > 1) found.push(`twice: ${name}`);
  const tagged = docs(node).some((doc) => (doc.tags ?? []).length > 0);
  if (!described(node) && !(constructor && tagged)) found.push(name);
}

for (const statement of source.statements) {
  if (!(ts.getCombinedModifierFlags(statement) & ts.ModifierFlags.Export)) continue;
  if (ts.isVariableStatement(statement)) {
    for (const declaration of statement.declarationList.declarations) check(statement, nameOf(declaration));
    continue;
  }
  check(statement, nameOf(statement));
  if (!ts.isClassDeclaration(statement)) continue;
  for (const member of statement.members) {
    if (member.name && ts.isPrivateIdentifier(member.name)) continue;
    const name = `${nameOf(statement)}.${nameOf(member)}`;
    const getter = statement.members.find(
      (other) => ts.isGetAccessor(other) && nameOf(other) === nameOf(member) && described(other),
    );
    if (ts.isSetAccessor(member) && getter) continue;
    check(member, name, { constructor: ts.isConstructorDeclaration(member) });
  }
}
process.stdout.write(found.map((line) => `${line}\n`).join(''));
