import * as tf from '@tensorflow/tfjs';
import { registerNativeBackend } from '/work/main/src/backends/native.ts';
console.log(registerNativeBackend());
const x = tf.randomNormal([2, 9, 9, 3]); const w = tf.randomNormal([3, 3, 3, 5]);
const xd = await x.data(), wd = await w.data();
for (const be of ['cpu', 'native']) {
  await tf.setBackend(be);
  const xx = tf.tensor(xd, [2,9,9,3]), ww = tf.tensor(wd, [3,3,3,5]);
  const y = tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 2, 'same');
  const m = tf.matMul(tf.reshape(xx, [18, 27]), tf.reshape(xx, [18,27]), true, false);
  console.log(be, (await y.data()).slice(0, 4), (await m.data()).slice(0,3), tf.sum(xx, [1,2]).dataSync().slice(0,3));
}
