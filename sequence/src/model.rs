//! The one in-memory model of a task sequence, shared by the XML and YAML readers and writers,
//! the validator and the engine.
//!
//! The model is deliberately close to ConfigMgr's `<sequence>` XML (ConfigMgr 2007 OSD task
//! sequence schema, as exported by the console and by MDT): groups and steps keep *every*
//! attribute as an ordered list of raw strings, steps keep their `<action>` text and their
//! `<defaultVarList>` properties, and conditions keep their expression type and variables as
//! written. Typed accessors (`disabled()`, `timeout()`, …) interpret the attributes the engine
//! understands; the validator reports values they cannot interpret. Keeping raw attributes is what
//! makes `tsforge convert` lossless for unknown and future attributes (`runFromNet`, `expand`, …).
//!
//! Positions (`Pos`) record where a node was read from, for error messages; they never take part
//! in equality, so a model read from XML compares equal to the same model read back from YAML.

use serde::{Deserialize, Serialize};

/// Ordered attribute list, exactly as read (names are case-sensitive, as in XML).
pub type Attrs = Vec<(String, String)>;

/// A 1-based line and column in the source file. Equality ignores positions on purpose (see the
/// module documentation), so two models that differ only in where they came from compare equal.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl PartialEq for Pos {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}
impl Eq for Pos {}

impl Pos {
    pub fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

/// The file shape a sequence was read from, kept so `convert --to xml` writes the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Shape {
    /// `<sequence>` is the root element (MDT `ts.xml`, templates, our own XML output).
    #[default]
    Sequence,
    /// `<SmsTaskSequencePackage>…<SequenceData><sequence>` (MDT's ConfigMgr templates).
    /// `properties` are the wrapper's other child elements (`<Name>`, `<BootImageID>`, …) as
    /// (element name, text) in order.
    PackageWrapper { properties: Vec<(String, String)> },
    /// ConfigMgr's *Export Task Sequence* `object.xml`: `<INSTANCE CLASSNAME="SMS_TaskSequencePackage">`
    /// whose `Sequence` property holds the sequence as text. `properties` are the instance's other
    /// `<PROPERTY>`s (name, type, value) in order; `class_name` is the INSTANCE's CLASSNAME.
    WmiInstance {
        class_name: String,
        properties: Vec<WmiProperty>,
    },
}

/// One `<PROPERTY NAME= TYPE=>` of a WMI instance dump, kept verbatim for round trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WmiProperty {
    pub name: String,
    /// Every attribute of `<PROPERTY>` except `NAME`, in order (`TYPE`, `CLASSORIGIN`, …).
    pub attrs: Attrs,
    /// The `<VALUE>` text, `None` when the property has no `<VALUE>` (a null).
    pub value: Option<String>,
    /// Raw XML of a value that is not a plain `<VALUE>` (e.g. `<VALUE.ARRAY>`), kept as written.
    pub raw: Option<String>,
}

/// A whole task sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Sequence {
    /// Attributes of the `<sequence>` element (`version`, `dependentProgram`, …), in order.
    pub attrs: Attrs,
    /// `<globalVarList>` variables: defaults set before the first step runs.
    pub global_vars: Vec<Variable>,
    /// Top-level groups and steps, in order.
    pub items: Vec<Node>,
    /// Child elements of `<sequence>` that tsforge does not interpret (`<referenceList>`, …),
    /// kept as raw XML text so they are written back unchanged.
    pub extra_xml: Vec<Extra>,
    /// The order of the child elements as read, when it is not the writer's default
    /// ([`default_order`]); empty = the default.
    #[serde(default)]
    pub order: Vec<Part>,
    /// The file shape the sequence came from.
    pub shape: Shape,
    /// Where `<sequence>` (or the YAML document) started.
    pub pos: Pos,
}

/// A group or a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    Group(Group),
    Step(Step),
}

/// A `<group>`: an ordered list of children that share a condition and error policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Group {
    /// Every attribute as written (`name`, `description`, `disable`, `continueOnError`, `expand`, …).
    pub attrs: Attrs,
    /// The `<condition>` children; several at the top level are combined with *and*.
    pub condition: Vec<Condition>,
    pub children: Vec<Node>,
    /// Unknown child elements, raw XML, written back unchanged.
    pub extra_xml: Vec<Extra>,
    /// The order of the child elements as read, when not the default; empty = the default.
    #[serde(default)]
    pub order: Vec<Part>,
    pub pos: Pos,
}

/// The element a step was written as. ConfigMgr's console exports *Run Task Sequence* as its
/// own element, `<subtasksequence type="SMS_TaskSequence_SubTasksequence" …>`, with the same
/// attributes and children as a `<step>`; older files and MDT write every step as `<step>`.
/// Kept so the XML writer writes the same element back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StepElement {
    /// `<step>`.
    #[default]
    Step,
    /// `<subtasksequence>` (*Run Task Sequence*, as the console exports it).
    SubTaskSequence,
}

impl StepElement {
    /// The XML element name.
    pub fn xml_name(self) -> &'static str {
        match self {
            StepElement::Step => "step",
            StepElement::SubTaskSequence => "subtasksequence",
        }
    }
    /// The element for an XML element name that holds a step (`None` for any other name).
    pub fn from_xml(name: &str) -> Option<Self> {
        match name {
            "step" => Some(StepElement::Step),
            "subtasksequence" => Some(StepElement::SubTaskSequence),
            _ => None,
        }
    }
}

/// A `<step>` (or `<subtasksequence>`): one action.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Step {
    /// The element the step was written as (`<step>` unless said otherwise).
    #[serde(default)]
    pub element: StepElement,
    /// Every attribute as written (`type`, `name`, `description`, `disable`, `continueOnError`,
    /// `successCodeList`, `successCodes`, `runIn`, `timeout`, `startIn`, `retryCount`,
    /// `runFromNet`, …). MDT steps often have no `type`: they are plain command lines.
    pub attrs: Attrs,
    pub condition: Vec<Condition>,
    /// The `<action>` text: the command line ConfigMgr runs for this step.
    pub action: Option<String>,
    /// `<defaultVarList>` variables: the step's properties.
    pub vars: Vec<Variable>,
    /// Unknown child elements, raw XML, written back unchanged.
    pub extra_xml: Vec<Extra>,
    /// The order of the child elements as read (`<action>` before or after `<defaultVarList>`,
    /// …), when not the default; empty = the default.
    #[serde(default)]
    pub order: Vec<Part>,
    pub pos: Pos,
}

/// One child element of a `<sequence>`, `<group>` or `<step>`, for keeping their order: the
/// list (`<globalVarList>`, `<condition>`, `<defaultVarList>`) or element (`<action>`), the next
/// group or step, the next element kept as raw XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    GlobalVars,
    Condition,
    Action,
    Vars,
    Node,
    Extra,
}

impl Part {
    pub const ALL: &'static [Part] = &[
        Part::GlobalVars,
        Part::Condition,
        Part::Action,
        Part::Vars,
        Part::Node,
        Part::Extra,
    ];
    /// The name YAML's `xml_order` uses: the XML element name, `node` for a group or step,
    /// `extra` for an element kept as raw XML.
    pub fn name(self) -> &'static str {
        match self {
            Part::GlobalVars => "globalVarList",
            Part::Condition => "condition",
            Part::Action => "action",
            Part::Vars => "defaultVarList",
            Part::Node => "node",
            Part::Extra => "extra",
        }
    }
    pub fn from_name(name: &str) -> Option<Part> {
        Part::ALL.iter().copied().find(|p| p.name() == name)
    }
}

/// What a container holds, for ordering its child elements: which lists and elements are
/// written (a list only when it is not empty), and how many groups/steps and raw elements.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    pub global_vars: bool,
    pub condition: bool,
    pub action: bool,
    pub vars: bool,
    pub nodes: usize,
    pub extras: usize,
}

impl Parts {
    fn count(&self, p: Part) -> usize {
        match p {
            Part::GlobalVars => usize::from(self.global_vars),
            Part::Condition => usize::from(self.condition),
            Part::Action => usize::from(self.action),
            Part::Vars => usize::from(self.vars),
            Part::Node => self.nodes,
            Part::Extra => self.extras,
        }
    }
}

/// The writer's order when none was recorded: `<globalVarList>`, `<condition>`, `<action>`,
/// `<defaultVarList>`, the groups and steps, then the raw elements.
pub fn default_order(parts: &Parts) -> Vec<Part> {
    let mut out = Vec::new();
    for p in Part::ALL {
        out.extend(std::iter::repeat_n(*p, parts.count(*p)));
    }
    out
}

/// The order to write: `order` where it fits what the container holds, then anything it does
/// not place, in the default order (so nothing is ever left out).
pub fn layout(order: &[Part], parts: &Parts) -> Vec<Part> {
    let mut left: Vec<usize> = Part::ALL.iter().map(|p| parts.count(*p)).collect();
    let idx = |p: Part| Part::ALL.iter().position(|q| *q == p).unwrap_or(0);
    let mut out = Vec::new();
    for p in order {
        if left[idx(*p)] > 0 {
            left[idx(*p)] -= 1;
            out.push(*p);
        }
    }
    for p in Part::ALL {
        out.extend(std::iter::repeat_n(*p, left[idx(*p)]));
    }
    out
}

/// `order` as the model keeps it: empty when it is the default order.
pub fn normalize_order(order: Vec<Part>, parts: &Parts) -> Vec<Part> {
    if order == default_order(parts) {
        Vec::new()
    } else {
        order
    }
}

/// `Err` unless `order` places exactly what the container holds (each list once, each group,
/// step and raw element once).
pub fn check_order(order: &[Part], parts: &Parts) -> Result<(), String> {
    if order.is_empty() {
        return Ok(());
    }
    for p in Part::ALL {
        let have = order.iter().filter(|q| *q == p).count();
        let want = parts.count(*p);
        if have != want {
            return Err(format!(
                "`xml_order` lists `{}` {have} time(s), but there {} {want}",
                p.name(),
                if want == 1 { "is" } else { "are" }
            ));
        }
    }
    Ok(())
}

/// A child element tsforge does not interpret, kept as its raw XML text (line ends normalised)
/// and written back unchanged, with where it was read from (for `validate`'s warning).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Extra {
    pub xml: String,
    pub pos: Pos,
}

impl Extra {
    pub fn new(xml: impl Into<String>, pos: Pos) -> Self {
        Extra {
            xml: xml.into(),
            pos,
        }
    }
    /// The element's name: the text after `<` up to the first space, `/` or `>` (empty when the
    /// raw text does not start with an element).
    pub fn name(&self) -> &str {
        let Some(rest) = self.xml.strip_prefix('<') else {
            return "";
        };
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .unwrap_or(rest.len());
        &rest[..end]
    }
}

impl From<String> for Extra {
    fn from(xml: String) -> Self {
        Extra::new(xml, Pos::default())
    }
}

impl From<&str> for Extra {
    fn from(xml: &str) -> Self {
        Extra::new(xml, Pos::default())
    }
}

impl std::ops::Deref for Extra {
    type Target = str;
    fn deref(&self) -> &str {
        &self.xml
    }
}

impl PartialEq<&str> for Extra {
    fn eq(&self, other: &&str) -> bool {
        self.xml == *other
    }
}

/// A `<variable name= property= hidden=>value</variable>`: a global variable or a step property.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    /// Every attribute except `name`, in order (`property`, `hidden`, …).
    pub attrs: Attrs,
    pub value: String,
    pub pos: Pos,
}

/// A node of a `<condition>` tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// `<operator type="and|or|not">`. `not` negates the *and* of its children.
    Operator {
        kind: OperatorKind,
        /// Attributes other than `type`, in order.
        attrs: Attrs,
        children: Vec<Condition>,
        pos: Pos,
    },
    /// `<expression type="SMS_TaskSequence_…ConditionExpression">` with its `<variable>`s.
    Expression(Expression),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorKind {
    And,
    Or,
    Not,
}

impl OperatorKind {
    pub fn as_xml(self) -> &'static str {
        match self {
            OperatorKind::And => "and",
            OperatorKind::Or => "or",
            OperatorKind::Not => "not",
        }
    }
    pub fn from_xml(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "and" => Some(OperatorKind::And),
            "or" => Some(OperatorKind::Or),
            "not" => Some(OperatorKind::Not),
            _ => None,
        }
    }
}

/// One condition expression.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Expression {
    /// The `type` attribute, e.g. `SMS_TaskSequence_VariableConditionExpression`.
    pub kind: String,
    /// Attributes other than `type`, in order.
    pub attrs: Attrs,
    /// The expression's `<variable name=…>value</variable>` children (`Variable`, `Operator`,
    /// `Value` for a variable condition; `Path`, `DateTime`, … for a file condition).
    pub vars: Vec<Variable>,
    pub pos: Pos,
}

/// Condition expression types of ConfigMgr 2007, as written in `type=`.
pub mod expr_type {
    pub const VARIABLE: &str = "SMS_TaskSequence_VariableConditionExpression";
    pub const FILE: &str = "SMS_TaskSequence_FileConditionExpression";
    pub const FOLDER: &str = "SMS_TaskSequence_FolderConditionExpression";
    pub const REGISTRY: &str = "SMS_TaskSequence_RegistryConditionExpression";
    pub const WMI: &str = "SMS_TaskSequence_WMIConditionExpression";
    pub const SOFTWARE: &str = "SMS_TaskSequence_SoftwareConditionExpression";
    pub const OS: &str = "SMS_TaskSequence_OSConditionExpression";
    pub const ALL: &[&str] = &[VARIABLE, FILE, FOLDER, REGISTRY, WMI, SOFTWARE, OS];
}

/// Built-in step types implemented natively by the engine, as written in `type=`.
pub mod step_type {
    pub const RUN_COMMAND_LINE: &str = "SMS_TaskSequence_RunCommandLineAction";
    pub const SET_VARIABLE: &str = "SMS_TaskSequence_SetVariableAction";
    pub const SET_DYNAMIC_VARIABLES: &str = "SMS_TaskSequence_SetDynamicVariablesAction";
    pub const RUN_POWERSHELL: &str = "SMS_TaskSequence_RunPowerShellScriptAction";
    pub const REBOOT: &str = "SMS_TaskSequence_RebootAction";
    pub const SUB_SEQUENCE: &str = "SMS_TaskSequence_SubTasksequence";
    pub const PARTITION_DISK: &str = "SMS_TaskSequence_PartitionDiskAction";
    pub const APPLY_OS_IMAGE: &str = "SMS_TaskSequence_ApplyOperatingSystemAction";
    pub const APPLY_DATA_IMAGE: &str = "SMS_TaskSequence_ApplyDataImageAction";
    pub const CAPTURE_IMAGE: &str = "SMS_TaskSequence_CaptureSystemImageAction";
    pub const INSTALL_PACKAGE: &str = "SMS_TaskSequence_InstallSoftwareAction";
    pub const DOWNLOAD_PACKAGE_CONTENT: &str = "SMS_TaskSequence_DownloadPackageContentAction";
    pub const APPLY_DRIVER_PACKAGE: &str = "SMS_TaskSequence_ApplyDriverPackageAction";
    pub const APPLY_WINDOWS_SETTINGS: &str = "SMS_TaskSequence_ApplyWindowsSettingsAction";
    pub const APPLY_NETWORK_SETTINGS: &str = "SMS_TaskSequence_ApplyNetworkSettingsAction";
    pub const SETUP_WINDOWS_AND_SMS: &str = "SMS_TaskSequence_SetupWindowsAndSMSAction";

    /// Short YAML names and the ConfigMgr types they stand for. YAML accepts either spelling;
    /// the YAML writer uses the short name when there is one.
    pub const SHORT_NAMES: &[(&str, &str)] = &[
        ("run", RUN_COMMAND_LINE),
        ("set-variable", SET_VARIABLE),
        ("set-dynamic-variables", SET_DYNAMIC_VARIABLES),
        ("powershell", RUN_POWERSHELL),
        ("restart", REBOOT),
        ("run-sequence", SUB_SEQUENCE),
        ("partition-disk", PARTITION_DISK),
        ("apply-image", APPLY_OS_IMAGE),
        ("apply-data-image", APPLY_DATA_IMAGE),
        ("capture-image", CAPTURE_IMAGE),
        ("install-package", INSTALL_PACKAGE),
        ("download-package", DOWNLOAD_PACKAGE_CONTENT),
        ("apply-driver-package", APPLY_DRIVER_PACKAGE),
        ("apply-windows-settings", APPLY_WINDOWS_SETTINGS),
        ("apply-network-settings", APPLY_NETWORK_SETTINGS),
        ("hand-over", SETUP_WINDOWS_AND_SMS),
    ];

    /// The ConfigMgr type for a YAML short name (or the name itself when it is not short).
    pub fn from_short(name: &str) -> &str {
        SHORT_NAMES
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
            .unwrap_or(name)
    }

    /// The YAML short name for a ConfigMgr type, if it has one.
    pub fn to_short(kind: &str) -> Option<&'static str> {
        SHORT_NAMES
            .iter()
            .find(|(_, t)| t.eq_ignore_ascii_case(kind))
            .map(|(s, _)| *s)
    }
}

/// Attribute names the engine interprets, with the YAML key each is written as.
/// Attributes not listed here are kept under `attributes:` in YAML.
pub const STEP_ATTRS: &[(&str, &str)] = &[
    ("type", "type"),
    ("name", "name"),
    ("description", "description"),
    ("disable", "disabled"),
    ("continueOnError", "continue_on_error"),
    ("successCodeList", "success_codes"),
    ("successCodes", "success_codes_alt"),
    ("runIn", "run_in"),
    ("timeout", "timeout"),
    ("startIn", "start_in"),
    ("retryCount", "retry_count"),
    ("runFromNet", "run_from_net"),
];

/// Group attributes the engine interprets, with their YAML keys.
pub const GROUP_ATTRS: &[(&str, &str)] = &[
    ("name", "name"),
    ("description", "description"),
    ("disable", "disabled"),
    ("continueOnError", "continue_on_error"),
    ("expand", "expand"),
];

/// Look an attribute up (exact name first, then ignoring ASCII case, as exports vary).
pub fn attr<'a>(attrs: &'a Attrs, name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .or_else(|| attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v.as_str())
}

/// `true`/`false` as ConfigMgr writes them (case-insensitive). `None` for anything else.
pub fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The default success codes of *Run Command Line*: 0 and 3010 (restart required).
pub const DEFAULT_SUCCESS_CODES: &[i64] = &[0, 3010];

/// Ranges of the numbers a sequence holds. ConfigMgr's documentation gives none of them, so
/// these are tsforge's choices, listed in `docs/engine.md` ("Limits"); every number is checked
/// against its range where it is read (`Step::check_numbers`), so a run never starts with a
/// value it would misread.
pub mod limits {
    /// `timeout` (seconds; 0 = no limit): at most 30 days.
    pub const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 60 * 60;
    /// `retryCount`: at most 1,000 extra attempts.
    pub const MAX_RETRY_COUNT: u64 = 1_000;
    /// Exit codes in `successCodeList`/`successCodes`: a Windows exit code is a 32-bit value,
    /// written signed (`-2147024891`) or unsigned (`2147942405`).
    pub const MIN_EXIT_CODE: i64 = i32::MIN as i64;
    pub const MAX_EXIT_CODE: i64 = u32::MAX as i64;
    /// `SMSRebootTimeout` of *Restart Computer* (seconds the message is shown): at most a day.
    pub const MAX_REBOOT_TIMEOUT_SECS: u64 = 24 * 60 * 60;
    /// `ImageIndex` (WIM images are numbered from 1) and disk and partition numbers.
    pub const MAX_INDEX: u64 = u32::MAX as u64;
    /// *Run Task Sequence* levels: a child may include a grandchild, and so on, 32 levels deep.
    pub const MAX_CHILD_DEPTH: usize = 32;
    /// Groups inside groups, counting the group each *Run Task Sequence* step becomes, across
    /// all the files of a run: as deep as one file may nest its elements.
    pub const MAX_NESTING: usize = 256;
    /// Steps and groups of a sequence with its child sequences expanded.
    pub const MAX_EXPANDED: usize = 100_000;
    /// `and`/`or`/`not` operators inside each other in one condition: the compiled program,
    /// conditions included, must read back from the state directory's `program.json`, whose
    /// JSON reader nests at most 128 levels (each operator takes three).
    pub const MAX_CONDITION_DEPTH: usize = 32;
}

/// How many operators deep `conds` nest (0 for plain expressions).
pub fn condition_depth(conds: &[Condition]) -> usize {
    conds
        .iter()
        .map(|c| match c {
            Condition::Operator { children, .. } => 1 + condition_depth(children),
            Condition::Expression(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

/// `Err` when `conds` nest deeper than [`limits::MAX_CONDITION_DEPTH`].
pub fn check_condition_depth(conds: &[Condition]) -> Result<(), String> {
    let depth = condition_depth(conds);
    if depth > limits::MAX_CONDITION_DEPTH {
        return Err(format!(
            "the condition nests operators {depth} deep; tsforge's limit is {}",
            limits::MAX_CONDITION_DEPTH
        ));
    }
    Ok(())
}

/// A whole number in `min..=max` written in a sequence: `Err` says what is wrong and the range.
/// `unit` (e.g. `seconds`) is said in the message when not empty.
pub fn parse_in_range(
    what: &str,
    value: &str,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<u64, String> {
    let t = value.trim();
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" ({unit})")
    };
    let range = format!("a whole number from {min} to {max}{unit}");
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}={value:?} must be {range}"));
    }
    match t.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{what}={value:?} is out of range: it must be {range}"
        )),
    }
}

/// Parse a space- (or comma-) separated list of exit codes. `Err` names the bad token and the
/// allowed range.
pub fn parse_codes(s: &str) -> Result<Vec<i64>, String> {
    s.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let range = format!(
                "an exit code from {} to {}",
                limits::MIN_EXIT_CODE,
                limits::MAX_EXIT_CODE
            );
            match t.parse::<i64>() {
                Ok(n) if (limits::MIN_EXIT_CODE..=limits::MAX_EXIT_CODE).contains(&n) => Ok(n),
                Ok(_) => Err(format!("{t:?} is out of range: it must be {range}")),
                Err(_)
                    if t.trim_start_matches(['-', '+'])
                        .bytes()
                        .all(|b| b.is_ascii_digit()) =>
                {
                    Err(format!("{t:?} is out of range: it must be {range}"))
                }
                Err(_) => Err(format!("{t:?} is not {range}")),
            }
        })
        .collect()
}

impl Node {
    pub fn attrs(&self) -> &Attrs {
        match self {
            Node::Group(g) => &g.attrs,
            Node::Step(s) => &s.attrs,
        }
    }
    pub fn name(&self) -> &str {
        attr(self.attrs(), "name").unwrap_or("")
    }
    pub fn pos(&self) -> Pos {
        match self {
            Node::Group(g) => g.pos,
            Node::Step(s) => s.pos,
        }
    }
    pub fn condition(&self) -> &[Condition] {
        match self {
            Node::Group(g) => &g.condition,
            Node::Step(s) => &s.condition,
        }
    }
    /// `disable="true"`.
    pub fn disabled(&self) -> bool {
        attr(self.attrs(), "disable")
            .and_then(parse_bool)
            .unwrap_or(false)
    }
    /// `continueOnError="true"`.
    pub fn continue_on_error(&self) -> bool {
        attr(self.attrs(), "continueOnError")
            .and_then(parse_bool)
            .unwrap_or(false)
    }
}

impl Step {
    /// The `type` attribute; `None` for MDT's untyped command-line steps. A
    /// `<subtasksequence>` element without a `type` is a *Run Task Sequence* step.
    pub fn kind(&self) -> Option<&str> {
        attr(&self.attrs, "type")
            .filter(|t| !t.is_empty())
            .or(match self.element {
                StepElement::SubTaskSequence => Some(step_type::SUB_SEQUENCE),
                StepElement::Step => None,
            })
    }
    pub fn name(&self) -> &str {
        attr(&self.attrs, "name").unwrap_or("")
    }
    /// A property from `<defaultVarList>`, by `property` (or `name`), ignoring ASCII case.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|v| {
                attr(&v.attrs, "property")
                    .unwrap_or(&v.name)
                    .eq_ignore_ascii_case(key)
            })
            .or_else(|| self.vars.iter().find(|v| v.name.eq_ignore_ascii_case(key)))
            .map(|v| v.value.as_str())
    }
    /// Success codes: the union of `successCodeList` and `successCodes` when either is present
    /// (some exports carry both), else 0 and 3010. Tokens that are not exit codes are rejected
    /// before a run starts ([`Step::check_numbers`]) and skipped here.
    pub fn success_codes(&self) -> Vec<i64> {
        let mut codes = Vec::new();
        let mut any = false;
        for key in ["successCodeList", "successCodes"] {
            if let Some(v) = attr(&self.attrs, key) {
                any = true;
                for t in v
                    .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
                    .filter(|t| !t.is_empty())
                {
                    let code = t
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (limits::MIN_EXIT_CODE..=limits::MAX_EXIT_CODE).contains(n));
                    if let Some(n) = code {
                        if !codes.contains(&n) {
                            codes.push(n);
                        }
                    }
                }
            }
        }
        if !any {
            codes.extend_from_slice(DEFAULT_SUCCESS_CODES);
        }
        codes
    }
    /// `timeout` in seconds (ConfigMgr writes the editor's minutes × 60); `None` = no limit.
    /// Never more than [`limits::MAX_TIMEOUT_SECS`] (larger values are rejected before a run
    /// starts by [`Step::check_numbers`]).
    pub fn timeout_secs(&self) -> Option<u64> {
        attr(&self.attrs, "timeout")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(|t| t.min(limits::MAX_TIMEOUT_SECS))
    }
    /// `retryCount`: extra attempts before the step counts as failed, never more than
    /// [`limits::MAX_RETRY_COUNT`] (larger values are rejected by [`Step::check_numbers`]).
    pub fn retry_count(&self) -> u32 {
        attr(&self.attrs, "retryCount")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map(|t| t.min(limits::MAX_RETRY_COUNT) as u32)
            .unwrap_or(0)
    }
    /// Every number of the step the engine reads, checked against its range ([`limits`]):
    /// `timeout`, `retryCount`, the success codes, and the numeric properties of the native
    /// step types when they are written literally (a `%VAR%` value is checked when the step
    /// runs). Returns one message per bad value; each names the value and the allowed range.
    pub fn check_numbers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let name = self.name();
        let mut check = |what: &str, value: Option<&str>, min: u64, max: u64, unit: &str| {
            if let Some(v) = value {
                if let Err(e) = parse_in_range(what, v, min, max, unit) {
                    out.push(format!("step {name:?}: {e}"));
                }
            }
        };
        check(
            "timeout",
            attr(&self.attrs, "timeout"),
            0,
            limits::MAX_TIMEOUT_SECS,
            "seconds, 0 = no limit",
        );
        check(
            "retryCount",
            attr(&self.attrs, "retryCount"),
            0,
            limits::MAX_RETRY_COUNT,
            "",
        );
        // An empty property is an unset one (exports write `<variable … />`).
        let literal = |key: &str| {
            self.property(key)
                .filter(|v| !v.contains('%') && !v.trim().is_empty())
        };
        let kind = self.kind().map(step_type::from_short).unwrap_or_default();
        let is = |t: &str| kind.eq_ignore_ascii_case(t);
        if is(step_type::REBOOT) {
            check(
                "SMSRebootTimeout",
                literal("SMSRebootTimeout"),
                0,
                limits::MAX_REBOOT_TIMEOUT_SECS,
                "seconds",
            );
        }
        if is(step_type::APPLY_OS_IMAGE) || is(step_type::APPLY_DATA_IMAGE) {
            check(
                "ImageIndex",
                literal("ImageIndex"),
                1,
                limits::MAX_INDEX,
                "",
            );
            check(
                "DestinationDisk",
                literal("DestinationDisk"),
                0,
                limits::MAX_INDEX,
                "",
            );
            check(
                "DestinationPartition",
                literal("DestinationPartition"),
                1,
                limits::MAX_INDEX,
                "",
            );
        }
        for key in ["successCodeList", "successCodes"] {
            if let Some(val) = attr(&self.attrs, key) {
                if let Err(e) = parse_codes(val) {
                    out.push(format!("step {name:?}: {key}: {e}"));
                }
            }
        }
        out
    }
    /// What the step holds, for [`layout`].
    pub fn parts(&self) -> Parts {
        Parts {
            condition: !self.condition.is_empty(),
            action: self.action.is_some(),
            vars: !self.vars.is_empty(),
            extras: self.extra_xml.len(),
            ..Parts::default()
        }
    }
    /// The working directory: `startIn` attribute, else the `WorkingDirectory` property.
    pub fn start_in(&self) -> Option<&str> {
        attr(&self.attrs, "startIn")
            .or_else(|| self.property("WorkingDirectory"))
            .filter(|s| !s.trim().is_empty())
    }
}

impl Group {
    pub fn name(&self) -> &str {
        attr(&self.attrs, "name").unwrap_or("")
    }
    /// What the group holds, for [`layout`].
    pub fn parts(&self) -> Parts {
        Parts {
            condition: !self.condition.is_empty(),
            nodes: self.children.len(),
            extras: self.extra_xml.len(),
            ..Parts::default()
        }
    }
}

impl Variable {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Variable {
            name: name.into(),
            attrs: Vec::new(),
            value: value.into(),
            pos: Pos::default(),
        }
    }
    /// A step property: `<variable name="X" property="X">`.
    pub fn property(name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        Variable {
            attrs: vec![("property".to_string(), name.clone())],
            name,
            value: value.into(),
            pos: Pos::default(),
        }
    }
    /// `hidden="true"`: the value is a secret and never appears in logs.
    pub fn hidden(&self) -> bool {
        attr(&self.attrs, "hidden")
            .and_then(parse_bool)
            .unwrap_or(false)
    }
}

impl Expression {
    /// The value of one of the expression's variables (`Variable`, `Operator`, `Path`, …).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(key))
            .map(|v| v.value.as_str())
    }
}

impl Condition {
    pub fn pos(&self) -> Pos {
        match self {
            Condition::Operator { pos, .. } => *pos,
            Condition::Expression(e) => e.pos,
        }
    }
}

impl Sequence {
    /// What `<sequence>` holds, for [`layout`].
    pub fn parts(&self) -> Parts {
        Parts {
            global_vars: !self.global_vars.is_empty(),
            nodes: self.items.len(),
            extras: self.extra_xml.len(),
            ..Parts::default()
        }
    }

    /// The package ID the file carries in its wrapper: `<PackageID>` of an
    /// `<SmsTaskSequencePackage>`, or the `PackageID` property of an object.xml `<INSTANCE>`.
    /// `None` for a plain `<sequence>` (which has no place for one) or an empty ID.
    pub fn package_id(&self) -> Option<&str> {
        let id = match &self.shape {
            Shape::Sequence => None,
            Shape::PackageWrapper { properties } => properties
                .iter()
                .find(|(k, _)| k == "PackageID")
                .or_else(|| {
                    properties
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("PackageID"))
                })
                .map(|(_, v)| v.as_str()),
            Shape::WmiInstance { properties, .. } => properties
                .iter()
                .find(|p| p.name == "PackageID")
                .or_else(|| {
                    properties
                        .iter()
                        .find(|p| p.name.eq_ignore_ascii_case("PackageID"))
                })
                .and_then(|p| p.value.as_deref()),
        };
        id.map(str::trim).filter(|v| !v.is_empty())
    }

    /// Visit every node depth-first, in document order.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Node, usize)) {
        fn go<'a>(nodes: &'a [Node], depth: usize, f: &mut dyn FnMut(&'a Node, usize)) {
            for n in nodes {
                f(n, depth);
                if let Node::Group(g) = n {
                    go(&g.children, depth + 1, f);
                }
            }
        }
        go(&self.items, 0, f);
    }

    /// Number of steps (not groups) in the whole tree.
    pub fn step_count(&self) -> usize {
        let mut n = 0;
        self.walk(&mut |node, _| {
            if matches!(node, Node::Step(_)) {
                n += 1
            }
        });
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_codes_union_and_default() {
        let mut s = Step::default();
        assert_eq!(s.success_codes(), vec![0, 3010]);
        s.attrs.push(("successCodeList".into(), "0 3010".into()));
        s.attrs.push(("successCodes".into(), "0 1641".into()));
        assert_eq!(s.success_codes(), vec![0, 3010, 1641]);
    }

    #[test]
    fn positions_do_not_affect_equality() {
        let mut a = Variable::new("X", "1");
        let b = Variable::new("X", "1");
        a.pos = Pos::new(4, 9);
        assert_eq!(a, b);
    }

    #[test]
    fn attribute_lookup_ignores_case_as_fallback() {
        let attrs: Attrs = vec![("ContinueOnError".into(), "TRUE".into())];
        let n = Node::Step(Step {
            attrs,
            ..Default::default()
        });
        assert!(n.continue_on_error());
    }
}
