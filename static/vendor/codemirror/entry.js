// Crucible's code editor: CodeMirror 6 with what the submission form needs, built into one file
// (static/vendor/README.md says how).
import { EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection, placeholder } from "@codemirror/view";
import { EditorState } from "@codemirror/state";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching, indentUnit } from "@codemirror/language";

export { EditorView, EditorState, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection, placeholder,
  defaultKeymap, history, historyKeymap, indentWithTab, python, syntaxHighlighting, defaultHighlightStyle,
  indentOnInput, bracketMatching, indentUnit };
