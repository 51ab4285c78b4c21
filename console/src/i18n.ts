// Traditional Chinese and English. The choice is kept in the browser (it is no secret).

export type Language = "zh-TW" | "en";

const WORDS = {
  title: ["Lighthouse 營運主控台", "Lighthouse operations console"],
  board: ["案件看板", "Board"],
  subject: ["案件", "Incident"],
  signIn: ["登入", "Sign in"],
  signOut: ["登出", "Sign out"],
  signingIn: ["登入中…", "Signing in…"],
  signInFailed: ["登入失敗", "Sign-in failed"],
  noSignIn: ["尚未設定單一登入", "Single sign-on is not configured"],
  signedInAs: ["登入身分", "Signed in as"],
  language: ["English", "中文"],
  status: ["狀態", "Status"],
  statusClass: ["狀態類別", "Status class"],
  category: ["類別", "Category"],
  bureau: ["權責機關", "Bureau"],
  reported: ["通報時間", "Reported"],
  due: ["期限", "Due"],
  overdue: ["逾期", "Overdue"],
  onlyOverdue: ["只看逾期", "Overdue only"],
  all: ["全部", "All"],
  open: ["處理中", "Open"],
  fixed: ["已修復", "Fixed"],
  closed: ["已結案", "Closed"],
  search: ["搜尋標題或案號", "Search title or case number"],
  incidents: ["件", "incidents"],
  more: ["載入更多", "Load more"],
  loading: ["載入中…", "Loading…"],
  live: ["即時更新", "Live"],
  offline: ["連線中斷，重新連線中", "Disconnected; reconnecting"],
  back: ["返回看板", "Back to the board"],
  actions: ["可執行動作", "Actions"],
  noActions: ["您對此案件沒有可執行的動作", "There is nothing you may do to this incident now"],
  timeline: ["處理歷程", "Timeline"],
  workOrders: ["派工單", "Work orders"],
  detections: ["模型發現", "Model findings"],
  reporter: ["通報人", "Reporter"],
  masked: ["個人資料已遮蔽（無權限）", "Personal data masked (not permitted)"],
  description: ["說明", "Description"],
  location: ["位置", "Location"],
  crew: ["派工隊伍", "Crew"],
  reason: ["原因", "Reason"],
  note: ["備註", "Note"],
  confirm: ["確認", "Confirm"],
  cancel: ["取消", "Cancel"],
  conflict: [
    "其他人已更新此案件；以下為最新狀態，請再確認一次。",
    "Someone else changed this incident; here is its new state. Check it and try again.",
  ],
  done: ["已更新", "Updated"],
  notFound: ["找不到此案件，或您無權查看", "No such incident, or you may not see it"],
  toBureau: ["移交機關", "To bureau"],
  duplicateOf: ["重複於", "Duplicate of"],
  orCaseNumber: ["或輸入案件編號", "Or a case number"],
  transfers: ["移轉紀錄", "Transfers"],
  noTransfers: ["未曾移轉", "Never transferred"],
  duplicatesTitle: ["重複案件", "Duplicates"],
  duplicatedBy: ["被重複於", "Duplicated by"],
  noCandidates: ["附近沒有同類案件，請輸入案件編號", "No incident of the same kind nearby: enter a case number"],
  pickDuplicate: ["請選擇或輸入重複的案件", "Pick the incident this duplicates, or enter its case number"],
  confidence: ["信心", "Confidence"],
  sessionEnded: ["登入已失效，請重新登入", "Your session ended; sign in again"],
  audit: ["稽核紀錄", "Audit"],
  map: ["案件地圖", "Map"],
  pointerHint: ["將游標移到地圖上以顯示座標", "Move the pointer over the map for its coordinates"],
  cityTiles: ["高雄市政府底圖", "The city's base map"],
  latestFindings: ["即時模型發現", "Findings as they come"],
  licensing: ["授權管理", "Licensing"],
  licenceState: ["狀態", "State"],
  licensedModels: ["授權模型", "Models"],
  purpose: ["用途", "Purpose"],
  valid: ["有效期間", "Valid"],
  usedThisPeriod: ["本期用量", "Used this period"],
  requests: ["次請求", "requests"],
  requestsPerDay: ["近 30 日每日請求數", "Requests per day, last 30 days"],
  statement: ["下載對帳單", "Download the statement"],
  downloaded: ["已下載", "Downloaded"],
  models: ["模型品質", "Models"],
  production: ["正式版本", "Production"],
  candidate: ["候選版本", "Candidate"],
  noDecision: ["尚無版本決定（使用設定的模型）", "No decision yet (the configured model)"],
  trial: ["試行", "Trial"],
  noTrial: ["目前沒有試行", "No trial under way"],
  share: ["比例", "share"],
  frames: ["影像數（正式／候選）", "frames (production / candidate)"],
  quality: ["各版本各類別品質（依人員審查）", "Quality per version and category (from people's reviews)"],
  precision: ["精確率", "Precision"],
  precisionChart: ["精確率與 95% 信賴區間", "Precision with its 95% interval"],
  noReviews: ["尚無審查結果", "No reviews yet"],
  version: ["版本", "Version"],
  detectionsCount: ["發現數", "Detections"],
  reviewedCount: ["已審查", "Reviewed"],
  interval: ["95% 區間", "95% interval"],
  thresholdMisses: ["門檻漏報", "Threshold misses"],
  decisions: ["版本決定紀錄", "Decisions"],
  evaluations: ["評測結果", "Evaluations"],
  noEvaluations: ["尚無可檢視的評測集", "No evaluation set you may see"],
  noRuns: ["此評測集尚未評測", "No run over this set yet"],
  answered: ["已作答", "Answered"],
  unusable: ["無法使用", "unusable"],
  labelled: ["標記數", "Labelled"],
  setFrames: ["張影像", "frames"],
  recall: ["召回率", "Recall"],
  threshold: ["門檻", "Threshold"],
  evidence: ["證據影像", "Evidence"],
  imageMasked: ["影像可能含個人資料，已遮蔽（無權限）", "Image withheld: it may show people (not permitted)"],
  review: ["待審查的模型發現", "Findings to review"],
  waiting: ["件待審查", "waiting for a person"],
  confirmFinding: ["確認屬實", "Confirm"],
  rejectFinding: ["誤報", "Reject as false report"],
  reviewKeys: [
    "鍵盤：j／k 上下移動，c 確認屬實，r 誤報，d 開啟案件標記重複",
    "Keyboard: j/k to move, c to confirm, r to reject as a false report, d to open it and mark a duplicate",
  ],
  subjectFilter: ["身分", "Subject"],
  resourceFilter: ["資源", "Resource"],
  from: ["起", "From"],
  before: ["迄", "Before"],
  searchButton: ["查詢", "Search"],
  when: ["時間", "When"],
  operation: ["操作", "Operation"],
  decision: ["決定", "Decision"],
  recordDetail: ["紀錄內容", "Record"],
  chain: ["稽核鏈", "The chain"],
  verifyChain: ["驗證稽核鏈", "Verify the chain"],
  chainIntact: ["稽核鏈完整", "The chain is intact"],
  chainBroken: ["稽核鏈斷裂於", "The chain breaks at"],
  latestAnchor: ["最新簽章錨點", "Latest signed anchor"],
  noAnchor: ["尚無錨點", "No anchor yet"],
  policies: ["存取政策", "Policies"],
  policyVersion: ["政策版本", "Policy version"],
} as const;

const ACTIONS: Record<string, [string, string]> = {
  VERIFY: ["確認通報", "Verify"],
  DISPATCH: ["派工", "Dispatch"],
  START_WORK: ["開始施工", "Start work"],
  RESOLVE: ["完工", "Resolve"],
  REOPEN: ["重新開啟", "Reopen"],
  CLOSE: ["結案", "Close"],
  TRANSFER: ["移交", "Transfer"],
  MARK_DUPLICATE: ["標記重複", "Mark duplicate"],
};

const STATUSES: Record<string, [string, string]> = {
  DETECTED: ["已發現", "Detected"],
  VERIFIED: ["已通報", "Verified"],
  DISPATCHED: ["已派工", "Dispatched"],
  IN_PROGRESS: ["施工中", "In progress"],
  RESOLVED: ["已完工", "Resolved"],
  CLOSED: ["已結案", "Closed"],
};

const REASONS: Record<string, [string, string]> = {
  FIXED: ["已修復", "Fixed"],
  FALSE_POSITIVE: ["誤報", "False report"],
  DUPLICATE: ["重複", "Duplicate"],
  NOT_RESPONSIBLE: ["非本機關權責", "Not our responsibility"],
  TRANSFERRED: ["已移交", "Transferred"],
};

let language: Language = (localStorage.getItem("lighthouse.language") as Language) || "zh-TW";

export function currentLanguage(): Language {
  return language;
}

export function setLanguage(next: Language): void {
  language = next;
  localStorage.setItem("lighthouse.language", next);
  document.documentElement.lang = next;
}

const pick = (pair: readonly [string, string]): string => (language === "zh-TW" ? pair[0] : pair[1]);

export function t(word: keyof typeof WORDS): string {
  return pick(WORDS[word]);
}

export function actionName(action: string): string {
  return ACTIONS[action] ? pick(ACTIONS[action]) : action;
}

export function statusName(status: string): string {
  return STATUSES[status] ? pick(STATUSES[status]) : status;
}

export function reasonName(reason: string): string {
  return REASONS[reason] ? pick(REASONS[reason]) : reason;
}

export function when(iso: string): string {
  return new Date(iso).toLocaleString(language, { dateStyle: "short", timeStyle: "short" });
}
