import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend(process.argv[2]||'wasm'); await tf.ready();
const S = +(process.argv[3]||16), B = 64;
function conv(x, w, b) { // x [B,H,W,C], w [9C, O], same padding 3x3
  const [n,h,wd,c] = x.shape;
  const xp = tf.pad(x, [[0,0],[1,1],[1,1],[0,0]]);
  const cols = [];
  for (let dy=0;dy<3;dy++) for (let dx=0;dx<3;dx++) cols.push(tf.slice(xp,[0,dy,dx,0],[n,h,wd,c]));
  const p = tf.concat(cols, 3).reshape([n*h*wd, 9*c]);
  return tf.matMul(p, w).add(b).reshape([n,h,wd,w.shape[1]]);
}
const widths=(process.env.W||"3,16,32,64").split(",").map(Number);
const vars=[];
for (let i=0;i<3;i++){ vars.push(tf.variable(tf.randomNormal([9*widths[i],widths[i+1]],0,Math.sqrt(2/(9*widths[i]))))); vars.push(tf.variable(tf.zeros([widths[i+1]]))); }
const fcw=tf.variable(tf.randomNormal([widths[3],6],0,0.1)), fcb=tf.variable(tf.zeros([6]));
const opt = tf.train.adam(1e-3);
const x = tf.randomNormal([B,S,S,3]); const y = tf.oneHot(tf.tensor1d(Array.from({length:B},(_, i)=>i%6),'int32'),6);
function f(x){ let h=x; for(let i=0;i<3;i++){ h=tf.relu(conv(h,vars[2*i],vars[2*i+1])); if(i<2) h=tf.maxPool(h,2,2,'valid'); } return h.mean([1,2]).matMul(fcw).add(fcb); }
for (let it=0; it<3; it++) opt.minimize(()=>tf.losses.softmaxCrossEntropy(y,f(x)));
const t0=performance.now(); const N=20;
for (let it=0; it<N; it++) { const l = opt.minimize(()=>tf.losses.softmaxCrossEntropy(y,f(x)), true); l.dataSync(); l.dispose(); }
const dt=(performance.now()-t0)/1000; console.log('train img/s', (N*B/dt).toFixed(0));
const t1=performance.now(); for (let it=0; it<N; it++) tf.tidy(()=>f(x).dataSync()); console.log('infer img/s', (N*B/((performance.now()-t1)/1000)).toFixed(0), tf.memory().numTensors);
